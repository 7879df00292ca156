"""The review workflow as a pure state machine, and the one permission matrix every caller uses.

Per (case, configuration, structure) item::

    pending ──start──▶ in_review ──decide──▶ reviewed ──approve──▶ approved
                           ▲                     │
                           └──────reopen─────────┘   (editing a reviewed item sends it back to review)

- ``start`` (pending → in_review) makes the actor the item's reviewer; nobody else may decide it meanwhile.
- ``decide`` (in_review → reviewed) records ``accepted``, ``edited`` or ``rejected``; ``edited`` and ``rejected``
  need a comment saying what was changed or why.
- ``reopen`` (reviewed → in_review) clears the decision; the actor becomes the reviewer.
- ``approve`` (reviewed → approved) needs the approver or admin role and is refused to the item's reviewer.
- ``approved`` is final.

Roles: viewer < reviewer < approver < admin; :func:`allowed` is the permission matrix (:data:`MATRIX`).
Errors are :class:`WorkflowError` subclasses whose messages say what was refused and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from pipeline.errors import RefusedError


class Role(StrEnum):
    """Who a user is."""

    VIEWER = "viewer"
    REVIEWER = "reviewer"
    APPROVER = "approver"
    ADMIN = "admin"


class Action(StrEnum):
    """What a user may try."""

    VIEW = "view"  # worklist, cohort, patient pages
    START_REVIEW = "start_review"
    DECIDE = "decide"
    REOPEN = "reopen"
    APPROVE = "approve"
    EXPORT = "export"  # worklist CSV/Excel, NIfTI, RTSTRUCT, audit report, audit log
    VIEW_AUDIT = "view_audit"
    MANAGE_USERS = "manage_users"
    RECORD_TIME = "record_time"  # review time reported by the browser (pipeline.review.timing)
    SET_LEVELS = "set_levels"  # the trends' tolerance and action levels
    DEFINE_STUDY = "define_study"  # define a review study (pipeline.review.study)
    CLOSE_STUDY = "close_study"
    VIEW_STUDIES = "view_studies"  # the studies one reviews (a reviewer) or all of them
    VIEW_ALLOCATION = "view_allocation"  # every reviewer's arm of every case, and the results
    OPEN_STUDY_CASE = "open_study_case"  # reveals the actor's own arm of one assigned case


class State(StrEnum):
    """Where an item is in the workflow."""

    PENDING = "pending"
    IN_REVIEW = "in_review"
    REVIEWED = "reviewed"
    APPROVED = "approved"


class Decision(StrEnum):
    """A reviewer's verdict on an item."""

    ACCEPTED = "accepted"
    EDITED = "edited"
    REJECTED = "rejected"


_REVIEWING = frozenset({Role.REVIEWER, Role.APPROVER, Role.ADMIN})
_SIGNING = frozenset({Role.APPROVER, Role.ADMIN})
#: action → the roles allowed to do it
MATRIX: dict[Action, frozenset[Role]] = {
    Action.VIEW: frozenset(Role),
    Action.START_REVIEW: _REVIEWING,
    Action.DECIDE: _REVIEWING,
    Action.REOPEN: _REVIEWING,
    Action.APPROVE: _SIGNING,
    Action.EXPORT: _REVIEWING,
    Action.VIEW_AUDIT: _SIGNING,
    Action.MANAGE_USERS: frozenset({Role.ADMIN}),
    Action.RECORD_TIME: _REVIEWING,
    Action.SET_LEVELS: frozenset({Role.ADMIN}),
    Action.DEFINE_STUDY: frozenset({Role.ADMIN}),
    Action.CLOSE_STUDY: frozenset({Role.ADMIN}),
    Action.VIEW_STUDIES: _REVIEWING,
    Action.VIEW_ALLOCATION: _SIGNING,
    Action.OPEN_STUDY_CASE: _REVIEWING,
}


class WorkflowError(RefusedError):
    """A refused review action; the message says why."""


class PermissionDenied(WorkflowError):
    """The actor's role does not allow the action."""


class SelfApprovalError(PermissionDenied):
    """The approver is the item's reviewer."""


class InvalidTransition(WorkflowError):
    """The action does not apply to the item's state (or its reviewer is someone else)."""


def allowed(role: Role | str, action: Action | str) -> bool:
    """Whether ``role`` may do ``action`` (unknown roles or actions: never)."""
    try:
        return Role(role) in MATRIX[Action(action)]
    except ValueError:
        return False


def require(role: Role | str, action: Action | str, username: str) -> None:
    """Raise :class:`PermissionDenied` unless ``role`` may do ``action``."""
    if not allowed(role, action):
        roles = " or ".join(sorted(MATRIX[Action(action)])) if action in MATRIX else "none (unknown action)"
        raise PermissionDenied(f"{username} ({role}) may not {action}: it needs the role {roles}")


@dataclass(frozen=True)
class Actor:
    """Who acts: a user id (None for the command line), a name for messages and the audit log, a role."""

    user_id: int | None
    username: str
    role: Role


@dataclass(frozen=True)
class ItemState:
    """The workflow fields of one review item."""

    state: State = State.PENDING
    decision: Decision | None = None
    comment: str | None = None
    reviewer_id: int | None = None
    approver_id: int | None = None


def _check(item: ItemState, actor: Actor, wanted: State, action: Action) -> None:
    require(actor.role, action, actor.username)
    if actor.user_id is None:
        raise PermissionDenied(f"{action} needs a signed-in user (the command line cannot review or approve)")
    if item.state != wanted:
        raise InvalidTransition(f"cannot {action} an item that is {item.state} (it must be {wanted})")


def start_review(item: ItemState, actor: Actor) -> ItemState:
    """pending → in_review, with the actor as reviewer."""
    _check(item, actor, State.PENDING, Action.START_REVIEW)
    return replace(item, state=State.IN_REVIEW, reviewer_id=actor.user_id)


def decide(item: ItemState, actor: Actor, decision: Decision | str, comment: str | None) -> ItemState:
    """in_review → reviewed with a decision (``edited``/``rejected`` need a comment); only by its reviewer."""
    _check(item, actor, State.IN_REVIEW, Action.DECIDE)
    try:
        verdict = Decision(decision)
    except ValueError as error:
        raise InvalidTransition(f"unknown decision {decision!r}: use one of {', '.join(Decision)}") from error
    if item.reviewer_id != actor.user_id:
        raise InvalidTransition(f"{actor.username} cannot decide an item that another user has in review")
    text = (comment or "").strip() or None
    if verdict != Decision.ACCEPTED and text is None:
        raise InvalidTransition(f"a decision '{verdict}' needs a comment saying what was changed or why")
    return replace(item, state=State.REVIEWED, decision=verdict, comment=text)


def reopen(item: ItemState, actor: Actor) -> ItemState:
    """reviewed → in_review (editing a reviewed item), decision cleared, the actor as reviewer."""
    _check(item, actor, State.REVIEWED, Action.REOPEN)
    return replace(item, state=State.IN_REVIEW, decision=None, comment=None, reviewer_id=actor.user_id)


def approve(item: ItemState, actor: Actor) -> ItemState:
    """reviewed → approved, by an approver or admin who is not the item's reviewer."""
    _check(item, actor, State.REVIEWED, Action.APPROVE)
    if item.reviewer_id is not None and item.reviewer_id == actor.user_id:
        raise SelfApprovalError(f"{actor.username} reviewed this item and may not approve it: a second user must")
    return replace(item, state=State.APPROVED, approver_id=actor.user_id)


def may_record_time(item: ItemState, actor: Actor, reads_case: bool = False) -> None:
    """Review time on ``item`` may be written by a signed-in user whose role may review, and only while the item is
    nobody's or the actor's own (its reviewer): never on an item another user reviews or reviewed, unless the actor
    ``reads_case``: it has an opened reading of the item's case in an open review study under the item's
    configuration, whose time is the study's measurement whoever reviews the item (a crossover's second reader
    reads a case the first one decided)."""
    require(actor.role, Action.RECORD_TIME, actor.username)
    if actor.user_id is None:
        raise PermissionDenied("review time needs a signed-in user (the command line has none)")
    if item.reviewer_id is not None and item.reviewer_id != actor.user_id and not reads_case:
        raise PermissionDenied(f"{actor.username} may not record time on an item another user reviews")
