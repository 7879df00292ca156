"""The review verbs of ``python -m pipeline``: ``users add|list|set``, ``export-worklist``, ``export-regions``,
``export-rtstruct``, ``audit-report``, ``refresh-regions`` and ``audit-verify``.

They act as :class:`~pipeline.review.service.CommandLine` (whoever holds the store's credentials, audited as
``cli:<os user>``); every export is audited like one from the dashboard. Passwords are read from standard input
(one line) or, on a terminal, prompted twice; never taken as an argument (it would land in the shell history and
the process list).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pipeline.errors import EXIT_FAILURE, EXIT_TAMPERED, InputError, NotFoundError
from pipeline.metrics.review_budget import DEFAULT_FRACTION, Budget
from pipeline.review.region_refresh import refresh_regions
from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.workflow import Role
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.cohort_numbers import CohortFilter
from pipeline.store.database import check_at_head, make_engine, session_factory
from pipeline.store.references import FINAL_CLINICAL, RESEARCH

T = TypeVar("T")


def add_verbs(verbs: Any) -> None:
    """Add the review verbs to ``python -m pipeline``'s sub-parsers."""
    users = verbs.add_parser("users", help="local accounts of the dashboard")
    actions = users.add_subparsers(dest="users_verb", required=True)
    add = actions.add_parser("add", help="create an account; the password is read from stdin or prompted")
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.set_defaults(handler=users_add_command)
    listing = actions.add_parser("list", help="list the accounts")
    listing.set_defaults(handler=users_list_command)
    change = actions.add_parser("set", help="change an account's role, (de)activate it or set a new password")
    change.add_argument("--username", required=True)
    change.add_argument("--role", choices=[r.value for r in Role])
    state = change.add_mutually_exclusive_group()
    state.add_argument("--deactivate", dest="active", action="store_false", default=None,
                       help="the account can no longer sign in (its history stays)")
    state.add_argument("--activate", dest="active", action="store_true", help="allow signing in again")
    change.add_argument("--password", action="store_true", help="set a new password (read from stdin or prompted)")
    change.add_argument("--unlock", action="store_true",
                        help="clear the account's failed-login counters (every client): it may sign in at once")
    change.set_defaults(handler=users_set_command)

    worklist = verbs.add_parser("export-worklist", help="the review worklist as CSV or Excel")
    budget_options(worklist)
    worklist.add_argument("--configuration", required=True, help="uncertainty configuration (e.g. DE+TTA+TS)")
    worklist.add_argument("--format", choices=("csv", "xlsx"), default="csv")
    worklist.add_argument("--out", type=Path, required=True)
    worklist.set_defaults(handler=export_worklist_command)

    regions = verbs.add_parser("export-regions", help="a case's review regions and entropy map as NIfTI")
    _case_options(regions)
    regions.add_argument("--out-dir", type=Path, required=True)
    regions.set_defaults(handler=export_regions_command)

    rtstruct = verbs.add_parser("export-rtstruct", help="a DICOM case's review regions as an RTSTRUCT")
    _case_options(rtstruct)
    rtstruct.add_argument("--out", type=Path, required=True, help="output .dcm")
    rtstruct.add_argument("--allow-generated-uids", action="store_true",
                          help="for de-identified CTs without Study/Series Instance UIDs: generate placeholders")
    rtstruct.set_defaults(handler=export_rtstruct_command)

    report = verbs.add_parser("audit-report", help="the audit report PDF")
    budget_options(report)
    report.add_argument("--configuration", help="worklist configuration (default: QA_REVIEW_CONFIGURATION, else "
                        "the newest model set's first)")
    report.add_argument("--out", type=Path, required=True, help="output .pdf")
    report.add_argument("--protocol", type=int, help="protocol of the cohort numbers (default: the newest of the "
                        "configuration's model set), as the cohort page's filter")
    report.add_argument("--repeat", type=int, action="append", help="a repeat of the protocol (repeatable; default: "
                        "every repeat)")
    report.add_argument("--reference", choices=(FINAL_CLINICAL, RESEARCH), help="only cases with this reference kind "
                        "(default: every reference)")
    report.set_defaults(handler=audit_report_command)

    refresh = verbs.add_parser("refresh-regions", help="store the review regions of results stored before the region "
                               "budgets or with other region settings, from their maps (no inference): the worklist "
                               "then reads them instead of the maps; exit 1 when a result's maps cannot be read")
    refresh.add_argument("--configuration", help="only this configuration's results (default: every one)")
    refresh.set_defaults(handler=refresh_regions_command)

    verify = verbs.add_parser("audit-verify", help="check the audit log's hash chain: exit 0 when intact, 3 and one "
                              "line naming the first bad row when a row was edited, removed, inserted or reordered")
    verify.set_defaults(handler=audit_verify_command)


def budget_options(parser: argparse.ArgumentParser) -> None:
    """``--model-set`` and the budget (``--budget`` fraction or ``--minutes``), as every budgeted verb takes them."""
    parser.add_argument("--model-set", help="model set of the configuration: its name or identity (default: the "
                                            "newest model set with a result of the configuration)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--budget", type=float, default=DEFAULT_FRACTION,
                       help=f"fraction of ROI voxels (default {DEFAULT_FRACTION})")
    group.add_argument("--minutes", type=float, help="time budget per patient instead (QA_REVIEW_SECONDS_PER_ML)")


def _case_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--case", required=True)
    parser.add_argument("--configuration", required=True)
    budget_options(parser)


def parsed_budget(args: argparse.Namespace) -> Budget:
    """The budget of :func:`budget_options`' arguments."""
    return Budget("minutes", args.minutes) if args.minutes is not None else Budget("fraction", args.budget)


def _engine(settings: Settings) -> Engine:
    engine = make_engine(settings.database_url)
    check_at_head(engine)
    return engine


def _read_password(username: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {username}: ")
    if getpass.getpass("again: ") != first:
        raise InputError("the two passwords differ")
    return first


def with_service(settings: Settings, call: Callable[[ReviewService], T]) -> T:
    """``call`` with the review service of the store (checked at head), acting as the command line."""
    engine = _engine(settings)
    try:
        return call(ReviewService(engine))
    finally:
        engine.dispose()


def refresh_regions_command(args: argparse.Namespace, settings: Settings) -> int:
    """Store the missing or outdated review regions of every deployed result with maps."""
    engine = _engine(settings)
    try:
        summary = refresh_regions(session_factory(engine), ArtifactStore(settings.artifacts_dir), settings.review,
                                  args.configuration)
    finally:
        engine.dispose()
    sys.stdout.write(summary.describe() + "\n")
    return EXIT_FAILURE if summary.failed else 0


def users_add_command(args: argparse.Namespace, settings: Settings) -> int:
    """Create an account."""
    password = _read_password(args.username)
    user = with_service(settings, lambda service: service.create_user(CommandLine(), args.username, password,
                                                                       args.role))
    sys.stdout.write(f"created {user.username} ({user.role})\n")
    return 0


def users_set_command(args: argparse.Namespace, settings: Settings) -> int:
    """Change an account."""
    password = _read_password(args.username) if args.password else None
    user = with_service(settings, lambda service: service.update_user(
        CommandLine(), args.username, role=args.role, active=args.active, password=password, unlock=args.unlock))
    sys.stdout.write(f"{user.username}: {user.role}, {'active' if user.active else 'deactivated'}\n")
    return 0


def users_list_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the accounts, one a line."""
    for user in with_service(settings, lambda service: service.list_users(CommandLine())):
        state = "active" if user.active else "deactivated"
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
        sys.stdout.write(f"{user.username}\t{user.role}\t{state}\tlast login {last}\n")
    return 0


def _export(settings: Settings, kind: str, object_id: str, produce: Callable[[Engine, Session, ArtifactStore], Path]
            ) -> int:
    """Run one audited export (reading in a session closed before the audit row is written); print the path."""
    engine = _engine(settings)

    def make() -> Path:
        with session_factory(engine)() as session:
            return produce(engine, session, ArtifactStore(settings.artifacts_dir))

    try:
        path = ReviewService(engine).export(CommandLine(), kind, object_id, make)
    finally:
        engine.dispose()
    sys.stdout.write(f"wrote {path}\n")
    return 0


def export_worklist_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write the worklist."""
    from pipeline.review.exports import write_worklist
    from pipeline.review.worklist import build_worklist

    budget = parsed_budget(args)

    def produce(_engine: Engine, session: Session, artifacts: ArtifactStore) -> Path:
        worklist = build_worklist(session, artifacts, args.configuration, budget, settings.review,
                                  model_set=args.model_set)
        return write_worklist(worklist, args.out, args.format)

    return _export(settings, f"worklist_{args.format}", f"{args.configuration} @ {budget.describe()}", produce)


def export_regions_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write a case's regions and entropy as NIfTI."""
    from pipeline.review.exports import export_region_maps

    budget = parsed_budget(args)

    def produce(_engine: Engine, session: Session, artifacts: ArtifactStore) -> Path:
        regions, entropy = export_region_maps(session, artifacts, args.case, args.configuration, budget,
                                              args.out_dir, settings.review, args.model_set)
        sys.stdout.write(f"wrote {entropy}\n")
        return regions

    return _export(settings, "regions_nifti", f"{args.case}/{args.configuration} @ {budget.describe()}", produce)


def export_rtstruct_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write a DICOM case's regions as an RTSTRUCT."""
    from pipeline.review.exports import export_case_rtstruct

    budget = parsed_budget(args)

    def produce(_engine: Engine, session: Session, artifacts: ArtifactStore) -> Path:
        return export_case_rtstruct(session, artifacts, args.case, args.configuration, budget, args.out,
                                    args.allow_generated_uids, settings.review, args.model_set)

    return _export(settings, "rtstruct", f"{args.case}/{args.configuration} @ {budget.describe()}", produce)


def _cohort_filter(args: argparse.Namespace) -> CohortFilter | None:
    """The report's cohort filter of ``--protocol``, ``--repeat`` and ``--reference``; None: the default protocol."""
    if args.protocol is None:
        if args.repeat or args.reference:
            raise InputError("--repeat and --reference filter a protocol: add --protocol ID")
        return None
    return CohortFilter(args.protocol, tuple(sorted(set(args.repeat))) if args.repeat else None,
                        reference_kind=args.reference)


def audit_report_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write the audit report PDF."""
    from pipeline.review.report import gather_report
    from pipeline.review.report_pdf import write_report
    from pipeline.review.worklist import default_configuration

    budget, chosen = parsed_budget(args), _cohort_filter(args)

    def produce(engine: Engine, session: Session, artifacts: ArtifactStore) -> Path:
        configuration = args.configuration or default_configuration(session, settings.review_configuration)
        if configuration is None:
            raise NotFoundError("the store holds no result yet: run the batch first")
        store = engine.url.render_as_string(hide_password=True)
        content = gather_report(session, artifacts, store, configuration, budget, settings.review, args.model_set,
                                chosen)
        return write_report(content, args.out)

    return _export(settings, "audit_report", f"{args.configuration or 'default'} @ {budget.describe()}", produce)


def audit_verify_command(args: argparse.Namespace, settings: Settings) -> int:
    """Verify the audit log's hash chain; one line either way."""
    report = with_service(settings, lambda service: service.verify_audit_log(CommandLine()))
    sys.stdout.write(report.line() + "\n")
    return 0 if report.ok else EXIT_TAMPERED
