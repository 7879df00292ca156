"""The project's errors and exit codes: a user's mistake versus everything else.

- :class:`UserError` and its branches are mistakes the user can fix: a bad argument or file, an unknown name, a
  refused action, a store that is not ready. The command line prints the message on one line and exits with
  :data:`EXIT_BAD_INPUT`; the web app answers with a 4xx status (:func:`http_status`).
- Any other exception is an internal error: the traceback goes to the log, the command line exits with
  :data:`EXIT_FAILURE` and the web app answers 500. It is never reported as bad input.

The pure libraries (the metric engine, the workflow state machine) raise plain ``ValueError`` for invalid arguments,
as scikit-learn and NumPy do; the edges that hand them user input (files, command-line flags, URLs) turn those into
:class:`InputError` with the user's words (which flag, which file).

The branches also subclass the built-in exception they stand for (``ValueError``, ``LookupError``,
``RuntimeError``), so callers that catch the built-in keep working.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # an internal error, or a batch in which some case failed
EXIT_BAD_INPUT = 2  # a user's mistake, reported in one line
EXIT_TAMPERED = 3  # `audit-verify` found the audit log altered (one line names the first bad row)
EXIT_OUT_OF_TOLERANCE = 4  # `run`: a value of the run is outside a tolerance level (one line says which)
EXIT_OUT_OF_ACTION = 5  # `run`: a value of the run is beyond an action level (one line says which)


class QAError(Exception):
    """Base of the project's own errors."""


class UserError(QAError):
    """A mistake the user can fix; the message says what and where, in one line."""


class InputError(UserError, ValueError):
    """An invalid argument, value or file (the message names it)."""


class NotFoundError(UserError, LookupError):
    """An unknown case, configuration, result, user or map."""


class RefusedError(UserError):
    """An action the actor may not do (role, workflow state, self-approval, stale version, failed login)."""


class StoreNotReadyError(UserError, RuntimeError):
    """The store is missing, unreachable or behind the code's schema; the message names the fix."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (its type's name when it has none)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def http_status(error: UserError) -> int:
    """The HTTP status of a user error: 404 unknown, 403 refused, 503 store not ready, 400 otherwise."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, RefusedError):
        return 403
    if isinstance(error, StoreNotReadyError):
        return 503
    return 400
