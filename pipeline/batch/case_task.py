"""One case of a batch run, wherever it runs: in the batch's own process or as a task on a Dask worker.

:func:`run_case` claims the case, reads and checks it, hashes its inputs and skips it when the stored processing has
the same hash, otherwise runs the grid and stores the case in one transaction; it returns a :class:`CaseOutcome`
(the run's summary gathers them). Everything a case needs besides its :class:`~pipeline.batch.cases.CaseSpec` is a
:class:`CaseJob` (the run's options, grid, id and code version: picklable, sent with every task) and a
:class:`CaseContext` (the process's sessions, predictor and the model set's rows). A failure is stored on the run
with its stage, reason and worker before the outcome goes back, so a case's record never depends on the process
that asked for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from pipeline.batch.cases import CaseError, CaseSpec, LoadedCase, load_case
from pipeline.batch.kept_reference import with_attached_reference
from pipeline.batch.locking import claim
from pipeline.batch.persist import refresh_acquisition
from pipeline.batch.process import CaseWork, process_case
from pipeline.errors import InputError
from pipeline.inference.engine import MemberPredictor
from pipeline.inference.grid import Configuration as GridConfiguration
from pipeline.inference.model_set import ModelSet as LoadedModelSet
from pipeline.metrics.review_budget import DEFAULT_FRACTION
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.settings import DEFAULT_MAX_VOXELS
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.schema import CaseFailure, Configuration, Image, ModelSet, Processing, TemperatureFit

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


@dataclass(frozen=True)
class CaseJob:
    """What every case of one run shares: the options, the grid, the run's id (None: a dry run) and code version."""

    options: BatchOptions
    grid: tuple[GridConfiguration, ...]
    run_id: int | None
    version: str


@dataclass(frozen=True)
class CaseContext:
    """A process's means to run a job's cases: sessions on the store, the predictor, the model set's rows, the name
    of the worker (None: the batch's own process) and how long to wait for a claimed case (seconds)."""

    sessions: sessionmaker
    predictor: MemberPredictor
    model_set: ModelSet
    configurations: dict[str, Configuration]
    fits: dict[str, list[TemperatureFit]]
    worker: str | None = None
    claim_wait: float = 0.0


@dataclass(frozen=True)
class CaseOutcome:
    """How one case ended: ``done``, ``skipped`` (unchanged), ``busy`` (another run holds it), ``would_run`` (dry
    run) or ``failed`` (with stage and reason); notes on a processed case; the worker it ran on and the seconds it
    took there (set on a worker: what the scheduling overhead is measured against)."""

    name: str
    status: str
    stage: str = ""
    reason: str = ""
    notes: tuple[str, ...] = ()
    worker: str | None = None
    seconds: float = 0.0


def input_hash(case: LoadedCase, options: BatchOptions, grid: Sequence[GridConfiguration], version: str) -> str:
    """Deployed temperatures are not part of it: the protocol stage that changes them redoes the TS results."""
    document = {
        "image": case.content_hash, "reference": case.reference_hash, "models": options.model_set.identity(),
        "grid": [c.name for c in grid], "settings": asdict(options.settings), "budget": options.budget,
        "code": version,
    }
    if options.sweep_maps:
        document["sweep_maps"] = True
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def record_failure(sessions: sessionmaker, run_id: int | None, spec: CaseSpec, stage: str, reason: str,
                   worker: str | None = None) -> CaseOutcome:
    """Log a failed case and store it on the run (not in a dry run); its outcome."""
    reason = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
    log.error("case=%s stage=%s failed: %s", spec.name, stage, reason)
    if run_id is not None:
        with sessions.begin() as session:
            session.add(CaseFailure(run_id=run_id, case_name=spec.name, source=str(spec.ct), stage=stage,
                                    reason=reason, worker=worker))
    return CaseOutcome(spec.name, "failed", stage, reason, worker=worker)


def _stored_hash(sessions: sessionmaker, name: str, model_set_id: int) -> str | None:
    with sessions() as session:
        return session.scalar(
            select(Processing.input_hash).join(Image, Image.id == Processing.image_id)
            .where(Image.name == name, Processing.model_set_id == model_set_id)
        )


def run_case(job: CaseJob, context: CaseContext, spec: CaseSpec) -> CaseOutcome:
    """Process one case under its claim (see the module's description)."""
    options, sessions, worker = job.options, context.sessions, context.worker
    with claim(sessions.kw["bind"], spec.name, wait=context.claim_wait) as held:
        if not held:
            log.info("case=%s skipped: another run holds it", spec.name)
            return CaseOutcome(spec.name, "busy", worker=worker)
        try:
            case = load_case(spec, tuple(options.model_set.labels), options.max_voxels)
        except CaseError as error:
            return record_failure(sessions, job.run_id, spec, error.stage, str(error), worker)
        hashed = input_hash(case, options, job.grid, job.version)
        if _stored_hash(sessions, spec.name, context.model_set.id) == hashed:
            log.info("case=%s skipped: unchanged since its last processing", spec.name)
            if not options.dry_run:
                with sessions.begin() as session:
                    if refresh_acquisition(session, spec.name, case.acquisition.record()):
                        log.info("case=%s: its acquisition changed; stored", spec.name)
            return CaseOutcome(spec.name, "skipped", worker=worker)
        if options.dry_run:
            return CaseOutcome(spec.name, "would_run", worker=worker)
        ready = _ready(job, context, spec, case)
        if isinstance(ready, CaseOutcome):
            return ready
        work = CaseWork(context.predictor, job.grid, context.model_set, context.configurations, context.fits,
                        options.settings, options.budget, ArtifactStore(options.artifacts), job.version,
                        job.run_id or 0, worker, options.sweep_maps)
        try:
            with sessions.begin() as session:
                timings = process_case(session, ready, work, hashed)
        except Exception as error:
            log.exception("case=%s failed", spec.name)
            return record_failure(sessions, job.run_id, spec, "process", f"{type(error).__name__}: {error}", worker)
        log.info("case=%s done passes=%d inference_s=%.2f metrics_s=%.2f storage_s=%.2f", spec.name,
                 timings.forward_passes, timings.inference, timings.metrics, timings.storage)
        return CaseOutcome(spec.name, "done", notes=tuple(ready.reference_notes), worker=worker)


def _ready(job: CaseJob, context: CaseContext, spec: CaseSpec, case: LoadedCase) -> LoadedCase | CaseOutcome:
    """The case as the grid will run it (with its attached reference when its input gives none), or the outcome of
    its failure (recorded): too small for the model's plan, or its attached reference unusable."""
    def fail(stage: str, reason: str) -> CaseOutcome:
        return record_failure(context.sessions, job.run_id, spec, stage, reason, context.worker)

    try:
        context.predictor.check_extent(case.image, str(spec.ct))
    except InputError as error:
        return fail("read", str(error))
    try:
        with context.sessions() as session:
            return with_attached_reference(session, ArtifactStore(job.options.artifacts), case)
    except InputError as error:  # a CaseError, or the stored reference map unreadable
        return fail("reference", str(error))
    except Exception as error:
        log.exception("case=%s: its attached reference could not be read", spec.name)
        return fail("reference", f"{type(error).__name__}: {error}")
