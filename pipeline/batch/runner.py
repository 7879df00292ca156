"""``python -m pipeline run``: the nightly batch over a cohort, idempotent, failure-isolated, one transaction per case.

For each case: claim it (no two runs process one case), read and check it, hash its inputs (image and reference
hashes, model set identity, grid, metric settings, review budget, code version) and skip it when the stored
processing has the same hash (storing its acquisition where that changed: it is not in the hash, see
:func:`pipeline.batch.persist.refresh_acquisition`); otherwise run the grid and store the case in one transaction.
A failing case is recorded on the run with its stage and reason, and the batch goes on; the exit code is 1 when any
case failed.
A CT too small for the model's plan (too few slices: :mod:`pipeline.inference.extent`) fails at stage ``read``
before any inference. A case redone without a reference in its input keeps the reference attached to it since
(:mod:`pipeline.batch.kept_reference`); its input hash stays the input's.
A run killed mid-way leaves only whole cases behind; the next run marks it ``interrupted`` and redoes the rest.
At the end a run verifies the audit log's hash chain (:mod:`pipeline.store.audit_chain`), logs the result and stores
it on the run (``runs.audit_check``, whose head is an anchor for later checks); a broken chain makes the exit code 1.
Last, the run's trend values are checked against the stored tolerance and action levels
(:mod:`pipeline.store.trend_check`): with levels set, one line says how many values are out, and a run without a
failure exits 4 when a value is out of tolerance, 5 when one is beyond an action level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from pipeline.batch.cases import CaseError, CaseSpec, LoadedCase, load_case
from pipeline.batch.kept_reference import with_attached_reference
from pipeline.batch.locking import claim
from pipeline.batch.member_passes import check_mode
from pipeline.batch.persist import deployed_fits, ensure_model_set, refresh_acquisition
from pipeline.batch.process import CaseWork, process_case
from pipeline.batch.version import code_version
from pipeline.errors import InputError
from pipeline.inference.grid import Configuration as GridConfiguration
from pipeline.inference.grid import grid_for
from pipeline.inference.model_set import ModelSet as LoadedModelSet
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.settings import DEFAULT_MAX_VOXELS
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.audit_chain import ChainReport, verify_engine
from pipeline.store.database import check_at_head, make_engine, refresh_statistics, session_factory
from pipeline.store.ood import refresh_ood_scores
from pipeline.store.schema import CaseFailure, Image, Processing, Run, utcnow
from pipeline.store.trend_check import RunCheck, check_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """What a batch run processes and where it stores it."""

    cases: tuple[CaseSpec, ...]
    model_set: LoadedModelSet
    models_source: str
    database_url: str
    artifacts: Path
    settings: MetricSettings = DEFAULT_SETTINGS
    budget: float = DEFAULT_FRACTION
    tta: bool = True
    sweep: bool = False
    sweep_maps: bool = False
    device: str | None = None
    dry_run: bool = False
    progress: bool = True
    max_voxels: int = DEFAULT_MAX_VOXELS


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


def _input_hash(case: LoadedCase, options: BatchOptions, grid: Sequence[GridConfiguration], version: str) -> str:
    """Deployed temperatures are not part of it: the protocol stage that changes them redoes the TS results."""
    document = {
        "image": case.content_hash, "reference": case.reference_hash, "models": options.model_set.identity(),
        "grid": [c.name for c in grid], "settings": asdict(options.settings), "budget": options.budget,
        "code": version,
    }
    if options.sweep_maps:
        document["sweep_maps"] = True
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


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


def _stored_hash(session: Session, name: str, model_set_id: int) -> str | None:
    return session.scalar(
        select(Processing.input_hash).join(Image, Image.id == Processing.image_id)
        .where(Image.name == name, Processing.model_set_id == model_set_id)
    )


class _Batch:
    """The state of one run while it goes through the cases."""

    def __init__(self, options: BatchOptions, sessions: sessionmaker, version: str) -> None:
        self.options, self.sessions, self.version = options, sessions, version
        self.summary = RunSummary()
        self._predictor = None

    def predictor(self):
        if self._predictor is None:
            from pipeline.inference.engine import MemberPredictor, choose_device

            self._predictor = MemberPredictor(self.options.model_set, choose_device(self.options.device))
        return self._predictor

    def fail(self, run_id: int | None, spec: CaseSpec, stage: str, reason: str) -> None:
        reason = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
        self.summary.failed.append((spec.name, stage, reason))
        log.error("case=%s stage=%s failed: %s", spec.name, stage, reason)
        if run_id is not None:
            with self.sessions.begin() as session:
                session.add(CaseFailure(run_id=run_id, case_name=spec.name, source=str(spec.ct), stage=stage,
                                        reason=reason))


def _grid(batch: _Batch) -> tuple[GridConfiguration, ...]:
    axes = batch.predictor().mirror_axes() if batch.options.tta else ()
    return grid_for(batch.options.model_set, axes, sweep=batch.options.sweep)


def run_batch(options: BatchOptions) -> RunSummary:
    """Process every case of ``options`` (see the module's description); the summary says what happened."""
    began = time.perf_counter()
    engine = make_engine(options.database_url)
    check_at_head(engine)
    artifacts = ArtifactStore(options.artifacts)
    if not options.dry_run:
        artifacts.check_writable()
    sessions = session_factory(engine)
    version = code_version()
    batch = _Batch(options, sessions, version)
    grid = _grid(batch)
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
    batch.summary.run_id = run_id
    missing = [c.name for c in grid if c.temperature_scaling and c.name not in fits]
    if missing:
        log.warning("no deployed temperature for %s: those configurations are skipped until "
                    "`python -m pipeline protocol` fits one", ", ".join(missing))
    try:
        for spec in tqdm(options.cases, desc="cases", unit="case", disable=not options.progress):
            _one_case(batch, spec, run_id, grid, model_set, configurations, fits)
    finally:
        batch.summary.seconds = time.perf_counter() - began
        if run_id is not None:
            with sessions.begin() as session:
                run = session.get(Run, run_id)
                assert run is not None
                summary = batch.summary
                run.cases_done, run.cases_skipped = len(summary.done), len(summary.skipped) + len(summary.busy)
                run.cases_failed, run.finished_at = len(summary.failed), utcnow()
                run.status = "failed" if summary.failed else "succeeded"
                run.error_summary = "; ".join(f"{c} ({s}): {r}" for c, s, r in summary.failed)[:4000] or None
                if summary.done:
                    refresh_ood_scores(session, model_set_id, options.settings)
            if summary.done:
                refresh_statistics(engine)
            summary.audit = check_audit_log(engine, sessions, run_id)
            summary.levels = check_levels(sessions, run_id)
        engine.dispose()
    return batch.summary


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


def _one_case(batch: _Batch, spec: CaseSpec, run_id: int | None, grid: tuple[GridConfiguration, ...],
              model_set, configurations, fits) -> None:
    options, summary = batch.options, batch.summary
    engine = batch.sessions.kw["bind"]
    with claim(engine, spec.name) as held:
        if not held:
            summary.busy.append(spec.name)
            log.info("case=%s skipped: another run holds it", spec.name)
            return
        try:
            case = load_case(spec, tuple(options.model_set.labels), options.max_voxels)
        except CaseError as error:
            batch.fail(run_id, spec, error.stage, str(error))
            return
        input_hash = _input_hash(case, options, grid, batch.version)
        with batch.sessions() as session:
            stored = _stored_hash(session, spec.name, model_set.id)
        if stored == input_hash:
            summary.skipped.append(spec.name)
            log.info("case=%s skipped: unchanged since its last processing", spec.name)
            if not options.dry_run:
                with batch.sessions.begin() as session:
                    if refresh_acquisition(session, spec.name, case.acquisition.record()):
                        log.info("case=%s: its acquisition changed; stored", spec.name)
            return
        if options.dry_run:
            summary.would_run.append(spec.name)
            return
        ready = _ready(batch, spec, case, run_id)
        if ready is None:
            return
        case = ready
        work = CaseWork(batch.predictor(), grid, model_set, configurations, fits, options.settings, options.budget,
                        ArtifactStore(options.artifacts), batch.version, run_id or 0, options.sweep_maps)
        try:
            with batch.sessions.begin() as session:
                timings = process_case(session, case, work, input_hash)
        except Exception as error:
            log.exception("case=%s failed", spec.name)
            batch.fail(run_id, spec, "process", f"{type(error).__name__}: {error}")
            return
        summary.done.append(spec.name)
        summary.notes += [(spec.name, note) for note in case.reference_notes]
        log.info("case=%s done passes=%d inference_s=%.2f metrics_s=%.2f storage_s=%.2f", spec.name,
                 timings.forward_passes, timings.inference, timings.metrics, timings.storage)


def _ready(batch: _Batch, spec: CaseSpec, case: LoadedCase, run_id: int | None) -> LoadedCase | None:
    """The case as the grid will run it (with its attached reference when its input gives none), or None when it
    failed (recorded): too small for the model's plan, or its attached reference unusable."""
    predictor = batch.predictor()  # a model set that cannot load is no case's failure: it stops the run
    try:
        predictor.check_extent(case.image, str(spec.ct))
    except InputError as error:
        batch.fail(run_id, spec, "read", str(error))
        return None
    try:
        with batch.sessions() as session:
            return with_attached_reference(session, ArtifactStore(batch.options.artifacts), case)
    except InputError as error:  # a CaseError, or the stored reference map unreadable
        batch.fail(run_id, spec, "reference", str(error))
    except Exception as error:
        log.exception("case=%s: its attached reference could not be read", spec.name)
        batch.fail(run_id, spec, "reference", f"{type(error).__name__}: {error}")
    return None


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
