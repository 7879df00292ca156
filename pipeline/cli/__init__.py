"""The command line, ``python -m pipeline VERB`` (also the console script ``qa-pipeline``): the edge of the process.

:func:`main` reads the settings from the environment once (:meth:`pipeline.settings.Settings.from_env`), parses
the arguments and hands both to the verb's handler, ``handler(args, settings) -> exit code``. The verbs live beside
this module, one module per group: :mod:`~pipeline.cli.evaluate` (evaluate), :mod:`~pipeline.cli.predict`
(predict), :mod:`~pipeline.cli.demo` (demo, train-demo-models), :mod:`~pipeline.cli.store` (migrate, run, protocol,
export-map), :mod:`~pipeline.cli.review` (users, the review exports, audit-report) and :mod:`~pipeline.cli.study`
(study define|list|show|close).

One error handler: a user's mistake (:class:`~pipeline.errors.UserError`, or the operating system refusing a path)
gets a one-line message on stderr and exit code 2, never a traceback; anything else is an internal error, logged
with its traceback, exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.cli import demo, evaluate, predict, review, store, study
from pipeline.cli.parsing import Parser
from pipeline.errors import EXIT_BAD_INPUT, EXIT_FAILURE, UserError, one_line
from pipeline.settings import Settings

log = logging.getLogger("pipeline")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pipeline``."""
    parser = Parser(prog="python -m pipeline", description="Budget-aware uncertainty QA for auto-segmentation.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for group in (evaluate, predict, demo, store, review, study):
        group.add_verbs(verbs)
    return parser


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """Run the command line with ``settings`` (default: from the environment); returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # a Dask cluster's start and stop (run --cluster)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args, settings or Settings.from_env()))
    except (UserError, OSError) as error:  # OSError: a path the operating system refuses (missing, unwritable)
        sys.stderr.write(f"error: {one_line(error)}\n")
        return EXIT_BAD_INPUT
    except Exception as error:
        log.exception("internal error")
        sys.stderr.write(f"internal error ({type(error).__name__}): {one_line(error)}; the traceback is above\n")
        return EXIT_FAILURE
