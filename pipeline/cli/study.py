"""The review study verbs of ``python -m pipeline``: ``study define|list|show|readings|close`` and ``study-report``
(``docs/review-study.md``).

They act as :class:`~pipeline.review.service.CommandLine` (admin rights, audited as ``cli:<os user>``), like the other
review verbs: ``study show`` therefore prints the whole allocation and ``study readings`` the measurements per reading
(:mod:`pipeline.review.study_measure`, tab-separated, or as CSV with ``--csv``), and each look is audited.
``study-report`` writes the analysis (:mod:`pipeline.review.study_analysis`) as CSV and as a PDF summary
(:mod:`pipeline.review.study_report`), reproducible from the store: the bootstrap draws from the study's seed. A user's
mistake (an unknown user, case or study, a reviewer without the reviewer role, no case, a name taken) is one line and
exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.cli.parsing import day, names
from pipeline.cli.review import budget_options, parsed_budget, with_service
from pipeline.errors import InputError
from pipeline.review.service import CommandLine
from pipeline.review.study import StudyDefinition, StudyInfo, StudyView
from pipeline.review.study_allocation import Design, Endpoint
from pipeline.review.study_analysis import analyse_study
from pipeline.review.study_cases import CaseSelection
from pipeline.review.study_report import difference_line, study_report_csv, write_study_report
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactStore


def add_verbs(verbs: Any) -> None:
    """Add ``study`` and its actions to ``python -m pipeline``'s sub-parsers."""
    study = verbs.add_parser("study", help="prospective review studies: standard (A) against uncertainty-guided (B) "
                             "review")
    actions = study.add_subparsers(dest="study_verb", required=True)
    define = actions.add_parser("define", help="define a study and store its allocation (immutable from then on)")
    define.add_argument("--name", required=True)
    define.add_argument("--configuration", required=True, help="the uncertainty configuration under test (arm B)")
    budget_options(define)
    cases = define.add_mutually_exclusive_group(required=True)
    cases.add_argument("--cohort", help="every case of this cohort with a result of the configuration")
    cases.add_argument("--cases", type=names, help="these cases, comma-separated")
    cases.add_argument("--processed-from", type=day, help="cases processed from this day (UTC, YYYY-MM-DD) ...")
    define.add_argument("--processed-to", type=day, help="... to this day, included")
    define.add_argument("--reviewers", type=names, required=True, help="usernames with the reviewer role, "
                        "comma-separated")
    define.add_argument("--design", required=True, choices=[d.value for d in Design])
    define.add_argument("--washout-days", type=int, help="crossover only: days between a reviewer's two periods")
    define.add_argument("--endpoint", required=True, choices=[e.value for e in Endpoint],
                        help="the pre-registered primary endpoint")
    define.add_argument("--seed", type=int, required=True, help="the allocation's seed (0 .. 2^63-1)")
    define.set_defaults(handler=define_command)
    listing = actions.add_parser("list", help="every study, one a line")
    listing.set_defaults(handler=list_command)
    show = actions.add_parser("show", help="a study's protocol and allocation (the look is audited)")
    show.add_argument("name")
    show.set_defaults(handler=show_command)
    readings = actions.add_parser("readings", help="what a study measured, one reading (reviewer × case) a line "
                                  "(the look is audited)")
    readings.add_argument("name")
    readings.add_argument("--csv", type=Path, help="write the table to this CSV file instead of printing it")
    readings.set_defaults(handler=readings_command)
    close = actions.add_parser("close", help="close a study: no case of it can be opened any more")
    close.add_argument("name")
    close.set_defaults(handler=close_command)
    report = verbs.add_parser("study-report", help="a study's analysis (per arm, B − A with bootstrap CIs) as CSV and "
                              "a PDF summary (the looks are audited)")
    report.add_argument("name")
    report.add_argument("--out", type=Path, default=Path("."), help="the folder for study_<name>.csv and .pdf "
                        "(default: the current folder)")
    report.set_defaults(handler=report_command)


def _selection(args: argparse.Namespace) -> CaseSelection:
    return CaseSelection(cohort=args.cohort, names=args.cases or (), processed_from=args.processed_from,
                         processed_to=args.processed_to)


def define_command(args: argparse.Namespace, settings: Settings) -> int:
    """Define a study."""
    definition = StudyDefinition(name=args.name, configuration=args.configuration, budget=parsed_budget(args),
                                 cases=_selection(args), reviewers=args.reviewers, design=args.design,
                                 endpoint=args.endpoint, seed=args.seed, washout_days=args.washout_days,
                                 model_set=args.model_set)
    info = with_service(settings, lambda service: service.define_study(CommandLine(), definition))
    sys.stdout.write(f"defined study {info.name}: {len(info.cases)} cases, {len(info.reviewers)} reviewers, "
                     f"{info.design}, endpoint {info.endpoint}; allocation {info.allocation_digest[:16]} "
                     f"(seed {info.seed})\n")
    return 0


def _status(info: StudyInfo) -> str:
    return f"closed {info.closed_at:%Y-%m-%d}" if info.closed_at else "open"


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print every study, one a line."""
    for info in with_service(settings, lambda service: service.studies(CommandLine())):
        sys.stdout.write(f"{info.name}\t{info.configuration}\t{info.budget.describe()}\t{info.design}\t"
                         f"{info.endpoint}\t{len(info.cases)} cases\t{len(info.reviewers)} reviewers\t"
                         f"{_status(info)}\n")
    return 0


def _protocol(info: StudyInfo) -> list[str]:
    washout = f", washout {info.washout_days} days" if info.washout_days is not None else ""
    return [f"study: {info.name} ({_status(info)})",
            f"configuration: {info.configuration} (model set {info.model_set}), budget {info.budget.describe()}",
            f"design: {info.design}{washout}; primary endpoint: {info.endpoint} ({info.endpoint.description})",
            f"cases: {len(info.cases)} from {info.case_source}",
            f"reviewers: {', '.join(info.reviewers)}",
            f"allocation: {info.allocation_method}, seed {info.seed}, sha256 {info.allocation_digest}",
            f"defined by {info.created_by} at {info.created_at:%Y-%m-%d %H:%M} UTC"]


def show_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print a study's protocol and its readings (reviewer, period, order, case, arm, first opening)."""
    view: StudyView = with_service(settings, lambda service: service.show_study(CommandLine(), args.name))
    lines = [*_protocol(view.study), "reviewer\tperiod\torder\tcase\tarm\topened"]
    for reading in view.readings:
        arm = f"{reading.arm.value} ({reading.arm.label})" if reading.arm else "concealed"
        opened = f"{reading.opened_at:%Y-%m-%d %H:%M}" if reading.opened_at else "-"
        lines.append(f"{reading.reviewer}\t{reading.period}\t{reading.order}\t{reading.case}\t{arm}\t{opened}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """The table as CSV at ``path``, whole or not at all."""
    if path.is_dir():
        raise InputError(f"--csv {path} is a folder, not a file")
    _write_whole(path, lambda temporary: table.to_csv(temporary, index=False))


def readings_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print (or write as CSV) a study's measurements, one reading a line."""
    artifacts = ArtifactStore(settings.artifacts_dir)
    table: pd.DataFrame = with_service(settings, lambda service: service.study_measurements(
        CommandLine(), args.name, artifacts, settings.review))
    if args.csv is not None:
        _write_csv(table, args.csv)
        sys.stdout.write(f"wrote {len(table)} readings of study {args.name} to {args.csv}\n")
    else:
        sys.stdout.write(table.to_csv(sep="\t", index=False, na_rep="NA"))
    return 0


def report_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write a study's analysis as ``study_<name>.csv`` and ``study_<name>.pdf`` into ``--out``."""
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file, not a folder")
    artifacts = ArtifactStore(settings.artifacts_dir)

    def read(service: Any) -> tuple[StudyView, pd.DataFrame]:
        return (service.show_study(CommandLine(), args.name),
                service.study_measurements(CommandLine(), args.name, artifacts, settings.review))

    view, readings = with_service(settings, read)
    study = view.study
    analysis = analyse_study(readings, study.design, study.endpoint, study.seed)
    stem = "study_" + re.sub(r"[^A-Za-z0-9._-]+", "_", study.name)
    csv_path, pdf_path = args.out / f"{stem}.csv", args.out / f"{stem}.pdf"
    _write_whole(csv_path, lambda path: path.write_text(study_report_csv(analysis), encoding="utf-8"))
    _write_whole(pdf_path, lambda path: write_study_report(analysis, study.record(), readings, path))
    sys.stdout.write(f"{study.name}: primary endpoint {analysis.primary.endpoint.value}, "
                     f"{difference_line(analysis.primary, analysis.confidence)}\nwrote {csv_path} and {pdf_path}\n")
    return 0


def _write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a file beside ``path``, then move it into place: ``path`` is whole or not there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def close_command(args: argparse.Namespace, settings: Settings) -> int:
    """Close a study."""
    info = with_service(settings, lambda service: service.close_study(CommandLine(), args.name))
    sys.stdout.write(f"closed study {info.name} ({_status(info)})\n")
    return 0
