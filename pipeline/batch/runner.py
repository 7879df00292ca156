"""``python -m pipeline run``: the nightly batch over a cohort, idempotent, failure-isolated, one transaction per case.

Each case is one :func:`pipeline.batch.case_task.run_case`: in this process one after another (the default), or one
task per case on a Dask cluster (``--cluster``, :mod:`pipeline.batch.cluster`); either way the case's claim and its
transaction are the source of truth, so a case whose worker dies is redone whole elsewhere.
For each case: claim it (no two runs process one case), read and check it, hash its inputs (image and reference
hashes, model set identity, grid, metric settings, review budget, code version) and skip it when the stored
processing has the same hash (storing its acquisition where that changed: it is not in the hash, see
:func:`pipeline.batch.persist.refresh_acquisition`); otherwise run the grid and store the case in one transaction.
A failing case is recorded on the run with its stage and reason, and the batch goes on; the exit code is 1 when any
case failed.
A CT too small for the model's plan (too few slices: :mod:`pipeline.inference.extent`) fails at stage ``read``
before any inference. A case redone without a reference in its input keeps the reference attached to it since
(:mod:`pipeline.batch.kept_reference`); its input hash stays the input's.
A run killed mid-way leaves only whole cases behind; the next run marks it ``interrupted`` and redoes the rest (a
run that stops on an error between cases, e.g. its Dask scheduler lost, marks itself so).
At the end a run verifies the audit log's hash chain (:mod:`pipeline.store.audit_chain`), logs the result and stores
it on the run (``runs.audit_check``, whose head is an anchor for later checks); a broken chain makes the exit code 1.
Last, the run's trend values are checked against the stored tolerance and action levels
(:mod:`pipeline.store.trend_check`): with levels set, one line says how many values are out, and a run without a
failure exits 4 when a value is out of tolerance, 5 when one is beyond an action level.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Protocol

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from pipeline.batch.case_task import BatchOptions, CaseContext, CaseJob, CaseOutcome, run_case
from pipeline.batch.cases import CaseSpec
from pipeline.batch.member_passes import check_mode
from pipeline.batch.persist import deployed_fits, ensure_model_set
from pipeline.batch.version import code_version
from pipeline.inference.engine import MemberPredictor, choose_device
from pipeline.inference.grid import grid_for
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.audit_chain import ChainReport, verify_engine
from pipeline.store.database import check_at_head, make_engine, refresh_statistics, session_factory
from pipeline.store.ood import refresh_ood_scores
from pipeline.store.schema import Run, utcnow
from pipeline.store.trend_check import RunCheck, check_run

__all__ = ["BatchOptions", "CaseExecutor", "RunSummary", "print_summary", "run_batch"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """How a run ended: counts, failures (case, stage, reason), notes on processed cases (case, note: also in the
    case's reference note) and what a dry run would do."""

    run_id: int | None = None
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    would_run: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    audit: ChainReport | None = None
    levels: RunCheck | None = None

    @property
    def exit_code(self) -> int:
        """1 when any case failed or the audit log's chain is broken; else the levels' code (4 out of tolerance,
        5 beyond action); 0 when every case was processed or skipped and every value is within its levels."""
        if self.failed or (self.audit is not None and not self.audit.ok):
            return 1
        return self.levels.exit_code if self.levels is not None else 0

    def add(self, outcome: CaseOutcome) -> None:
        """Count one case's outcome."""
        if outcome.status == "failed":
            self.failed.append((outcome.name, outcome.stage, outcome.reason))
            return
        getattr(self, outcome.status).append(outcome.name)
        self.notes += [(outcome.name, note) for note in outcome.notes]


class CaseExecutor(Protocol):
    """Where a run's cases go: one :func:`~pipeline.batch.case_task.run_case` each, outcomes as they complete."""

    def map(self, job: CaseJob, cases: Sequence[CaseSpec]) -> Iterator[CaseOutcome]:
        """Run every case of ``cases``; yield each outcome when its case is done."""
        ...


@dataclass(frozen=True)
class InProcess:
    """The embedded default: the cases one after another in this process."""

    context: CaseContext

    def map(self, job: CaseJob, cases: Sequence[CaseSpec]) -> Iterator[CaseOutcome]:
        """The outcomes in the cases' order."""
        return (run_case(job, self.context, spec) for spec in cases)


def _mark_interrupted(session: Session) -> None:
    """Runs left ``running`` by a process of this host that no longer exists."""
    host = socket.gethostname()
    for run in session.scalars(select(Run).where(Run.status == "running", Run.host == host)):
        try:
            os.kill(run.pid, 0)
        except ProcessLookupError:
            run.status, run.finished_at = "interrupted", utcnow()
            log.warning("run %d (pid %d) was interrupted; marked so", run.id, run.pid)
        except PermissionError:
            continue


def _remove_stale_temporaries(session: Session, artifacts: ArtifactStore) -> None:
    """Folders of map writes killed before the newest completed run started belong to no live write: removed."""
    started = session.scalar(select(Run.started_at).where(Run.status.in_(("succeeded", "failed")))
                             .order_by(Run.started_at.desc()).limit(1))
    if started is not None:
        artifacts.remove_stale(started if started.tzinfo else started.replace(tzinfo=UTC))


def run_batch(options: BatchOptions, executor: CaseExecutor | None = None) -> RunSummary:
    """Process every case of ``options`` (see the module's description) in this process, or through ``executor``
    (a Dask cluster: :mod:`pipeline.batch.cluster`); the summary says what happened."""
    began = time.perf_counter()
    engine = make_engine(options.database_url)
    check_at_head(engine)
    artifacts = ArtifactStore(options.artifacts)
    if not options.dry_run:
        artifacts.check_writable()
    sessions = session_factory(engine)
    version = code_version()
    # on a cluster the workers load the models; this process reads only the mirror axes, on the CPU
    predictor = MemberPredictor(options.model_set, choose_device(options.device if executor is None else "cpu"))
    grid = grid_for(options.model_set, predictor.mirror_axes() if options.tta else (), sweep=options.sweep)
    summary = RunSummary()
    with sessions.begin() as session:
        _mark_interrupted(session)
        if not options.dry_run:
            _remove_stale_temporaries(session, artifacts)
        model_set, configurations = ensure_model_set(session, options.model_set, grid, options.models_source)
        fits = deployed_fits(session, configurations)
        model_set_id = model_set.id
        check_mode(options.settings, fits)
        run_id = None
        if not options.dry_run:
            run = Run(kind="run", status="running", host=socket.gethostname(), pid=os.getpid(), code_version=version,
                      model_set_id=model_set.id, cases_total=len(options.cases),
                      options={"cases": len(options.cases), "budget": options.budget, "tta": options.tta,
                               "sweep": options.sweep, "sweep_maps": options.sweep_maps,
                               "models": options.models_source, "settings": asdict(options.settings)})
            session.add(run)
            session.flush()
            run_id = run.id
    summary.run_id = run_id
    missing = [c.name for c in grid if c.temperature_scaling and c.name not in fits]
    if missing:
        log.warning("no deployed temperature for %s: those configurations are skipped until "
                    "`python -m pipeline protocol` fits one", ", ".join(missing))
    job = CaseJob(options, grid, run_id, version)
    executor = executor or InProcess(CaseContext(sessions, predictor, model_set, configurations, fits))
    finished = False
    try:
        outcomes = executor.map(job, options.cases)
        for outcome in tqdm(outcomes, total=len(options.cases), desc="cases", unit="case",
                            disable=not options.progress):
            summary.add(outcome)
        finished = True
    finally:
        summary.seconds = time.perf_counter() - began
        if run_id is not None:
            with sessions.begin() as session:
                run = session.get(Run, run_id)
                assert run is not None
                run.cases_done, run.cases_skipped = len(summary.done), len(summary.skipped) + len(summary.busy)
                run.cases_failed, run.finished_at = len(summary.failed), utcnow()
                run.status = "interrupted" if not finished else "failed" if summary.failed else "succeeded"
                run.error_summary = "; ".join(f"{c} ({s}): {r}" for c, s, r in summary.failed)[:4000] or None
                if summary.done:
                    refresh_ood_scores(session, model_set_id, options.settings)
            if summary.done:
                refresh_statistics(engine)
            summary.audit = check_audit_log(engine, sessions, run_id)
            summary.levels = check_levels(sessions, run_id)
        engine.dispose()
    return summary


def check_audit_log(engine: Engine, sessions: sessionmaker, run_id: int) -> ChainReport:
    """Verify the audit log; the result goes to the log and onto the run."""
    report = verify_engine(engine)
    (log.info if report.ok else log.error)("%s", report.line())
    with sessions.begin() as session:
        session.get_one(Run, run_id).audit_check = report.record()
    return report


def check_levels(sessions: sessionmaker, run_id: int) -> RunCheck | None:
    """The run against the stored levels (None when none is stored); its line goes to the log."""
    with sessions() as session:
        check = check_run(session, run_id)
    if check is not None:
        (log.warning if check.findings else log.info)("%s", check.line())
    return check


def print_summary(summary: RunSummary, cases: Sequence[CaseSpec]) -> str:
    """The end-of-run report (also for a dry run)."""
    lines = []
    if summary.run_id is None:
        lines.append(f"Dry run: {len(summary.would_run)} of {len(cases)} cases would run; "
                     f"{len(summary.skipped)} unchanged, {len(summary.failed)} unreadable.")
        lines += [f"  would run: {name}" for name in summary.would_run]
    else:
        lines.append(f"Run {summary.run_id}: {len(summary.done)} processed, {len(summary.skipped)} unchanged, "
                     f"{len(summary.busy)} held by another run, {len(summary.failed)} failed, "
                     f"in {summary.seconds:.1f} s.")
    lines += [f"  FAILED {name} ({stage}): {reason}" for name, stage, reason in summary.failed]
    lines += [f"  NOTE {name}: {note}" for name, note in summary.notes]
    if summary.audit is not None:
        lines.append(summary.audit.line())
    if summary.levels is not None:
        lines.append(summary.levels.line())
    return "\n".join(lines)
