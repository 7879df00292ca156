"""The demo's **simulated** review study: scripted reviewers (:mod:`pipeline.review.study_simulation`, a documented
model with made-up parameters; not evidence) read the demo's phantoms, and every record they leave is written by
its owner, as a person's would be (``docs/review-study.md``, "The simulated demo study"):

1. The simulated clinician's final contour of each case is the phantom's own label map (its truth), attached as
   ``final_clinical`` by :func:`pipeline.batch.attach.attach_references` (the same labels the batch was given, so
   every recomputed number stays the same; only the reference's kind changes).
2. The scripted readers (``sim-reader-1``, …) are reviewer accounts made by the review service with a random
   password; the study is defined by the service as the command line (admin), per case, its name saying SIMULATED.
3. Each reader, in its allocation's order, opens its case (:meth:`~pipeline.review.study.StudyOperations.
   open_case_readings`, which reveals the arm), starts the review of every structure, opens arm B's regions
   (region clocks), reports activity and decides (:class:`~pipeline.review.service.ReviewService`), on a simulated
   clock: the services take it as their clock, so the timing service's clocks hold the simulated seconds, each gap
   capped at the idle cap. The readers start at 09:00 UTC the day before the run, one after another. No flagged
   volume is given with the reviews, so the simulated times never enter the measured review rate.
4. The study is closed (it blinds no one) and the readers are deactivated (nobody signs in as them).

A study of that name that exists already is left as it is (a second demo run).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pipeline.batch.attach import AttachRequest, attach_references
from pipeline.metrics.review_budget import Budget
from pipeline.review.base import ManualClock
from pipeline.review.service import CommandLine, ItemKey, ReviewService
from pipeline.review.study import StudyDefinition
from pipeline.review.study_allocation import Arm
from pipeline.review.study_analysis import analyse_study
from pipeline.review.study_cases import CaseSelection
from pipeline.review.study_measure import reading_rows
from pipeline.review.study_report import difference_line
from pipeline.review.study_simulation import (
    DEFAULT_MODEL,
    CaseFacts,
    ReaderModel,
    SimulatedReading,
    reading_generator,
    simulate_reading,
)
from pipeline.review.worklist import case_regions, deployed_results
from pipeline.settings import Settings
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import make_engine, session_factory
from pipeline.store.references import final_clinical_images
from pipeline.store.schema import Image, StructureResult, utcnow
from pipeline.store.study_schema import Study

SIMULATED_STUDY = "SIMULATED-demo-study"
SIMULATED_READERS = ("sim-reader-1", "sim-reader-2")
SIMULATED_CONFIGURATION = "DE"
SIMULATED_BUDGET = Budget("fraction", 0.02)
SIMULATED_SEED = 16
PAUSE_SECONDS = 30.0  # between two readings of one reader (no activity)


@dataclass(frozen=True)
class StudyPlan:
    """What the simulated study is: its name, cases (name → the file of its final contour), readers, the
    configuration and budget under test, the seed and the readers' model."""

    cases: Mapping[str, Path]
    name: str = SIMULATED_STUDY
    readers: tuple[str, ...] = SIMULATED_READERS
    configuration: str = SIMULATED_CONFIGURATION
    budget: Budget = SIMULATED_BUDGET
    seed: int = SIMULATED_SEED
    model: ReaderModel = DEFAULT_MODEL


def seed_simulated_study(settings: Settings, plan: StudyPlan, start: datetime | None = None
                         ) -> dict[tuple[str, str], SimulatedReading] | None:
    """Run the simulated study of ``plan`` into the store of ``settings`` (module description); what each reading
    (case, reader) drew, or None when a study of that name exists already. ``start``: the readers' first moment
    (default 09:00 UTC the day before)."""
    engine = make_engine(settings.database_url)
    try:
        clock = ManualClock(start or datetime.combine(utcnow().date() - timedelta(days=1), time(9), UTC))
        service = ReviewService(engine, clock=clock, review=settings.review)
        if plan.name in {study.name for study in service.studies(CommandLine())}:
            return None
        _attach_final_contours(engine, settings, plan.cases)
        readers = _readers(service, plan.readers)
        service.define_study(CommandLine(), StudyDefinition(
            name=plan.name, configuration=plan.configuration, budget=plan.budget,
            cases=CaseSelection(names=tuple(sorted(plan.cases))), reviewers=plan.readers, design="per-case",
            endpoint="edited-ml-per-minute", seed=plan.seed))
        facts = _facts(engine, settings, plan)
        drawn = {}
        for number, reader in enumerate(plan.readers, start=1):
            for reading in (r for r in service.study_readings(readers[reader]) if r.study == plan.name):
                clock.tick(PAUSE_SECONDS)
                drawn[(reading.case, reader)] = _read(service, clock, readers[reader], reading.case, facts,
                                                      reading_generator(plan.seed, number, reading.order), plan)
        service.close_study(CommandLine(), plan.name)
        for reader in plan.readers:
            service.update_user(CommandLine(), reader, active=False)
        return drawn
    finally:
        engine.dispose()


def _attach_final_contours(engine: Engine, settings: Settings, cases: Mapping[str, Path]) -> None:
    """Attach each case's final contour as ``final_clinical``, unless that is its reference in force already."""
    with session_factory(engine)() as session:
        final = set(session.scalars(select(Image.name).where(Image.id.in_(final_clinical_images()))))
    requests = [AttachRequest(case, path, "final_clinical") for case, path in sorted(cases.items())
                if case not in final]
    if requests:
        attach_references(settings.database_url, settings.artifacts_dir, requests, settings.max_voxels, isolate=False)


def _readers(service: ReviewService, names: tuple[str, ...]) -> dict[str, int]:
    """The scripted readers' ids: created as reviewers with a random password, or reactivated."""
    existing = {user.username: user for user in service.list_users(CommandLine())}
    ids = {}
    for name in names:
        if name in existing:
            ids[name] = service.update_user(CommandLine(), name, role="reviewer", active=True).id
        else:
            ids[name] = service.create_user(CommandLine(), name, secrets.token_urlsafe(24), "reviewer").id
    return ids


@dataclass(frozen=True)
class _Case:
    """A study case as the scripted readers see it: the model's facts, its review items and which of them the final
    contour changes, its regions (class, rank, mL) in the worklist's order."""

    facts: CaseFacts
    items: tuple[ItemKey, ...]
    wrong: frozenset[ItemKey]
    regions: tuple[tuple[int, int, float], ...]
    fraction: float


def _facts(engine: Engine, settings: Settings, plan: StudyPlan) -> dict[str, _Case]:
    """Each study case's facts, from the owners: the edit mask (:func:`reading_rows`) and the regions
    (:func:`case_regions`) at the study's budget."""
    artifacts = ArtifactStore(settings.artifacts_dir)
    with session_factory(engine)() as session:
        study_id = session.scalars(select(Study.id).where(Study.name == plan.name)).one()
        rows = reading_rows(session, artifacts, study_id, settings.review).drop_duplicates("case").set_index("case")
        return {case: _case(session, artifacts, settings, plan, row["edited_ml"], row["edits_in_regions_fraction"],
                            case) for case, row in rows.iterrows()}


def _case(session: Session, artifacts: ArtifactStore, settings: Settings, plan: StudyPlan, edited_ml: float,
          inside: float, case: str) -> _Case:
    ref = deployed_results(session, plan.configuration, case)[0]
    regions, fraction, _ = case_regions(session, artifacts, ref, plan.budget, settings.review)
    dsc = dict(session.execute(select(StructureResult.class_index, StructureResult.dsc)
                               .where(StructureResult.result_id == ref.result.id)).all())
    items = tuple(ItemKey(ref.image.id, ref.result.configuration_id, c) for c in range(1, len(ref.labels)))
    wrong = frozenset(item for item in items if dsc.get(item.class_index) is not None
                      and dsc[item.class_index] < 1.0)
    return _Case(CaseFacts(float(edited_ml), float(inside), len(regions.regions)), items, wrong,
                 tuple((r.class_index, r.rank, r.volume_ml) for r in regions.regions), fraction)


def _read(service: ReviewService, clock: ManualClock, reader: int, case: str, cases: Mapping[str, _Case],
          rng: np.random.Generator, plan: StudyPlan) -> SimulatedReading:
    """One scripted reading: open the case (the arm is revealed), start every structure's review, then the drawn
    activity (in arm B the drawn regions opened one per event, in the worklist's order) and the decisions."""
    seen = cases[case]
    drawn = simulate_reading(rng, Arm(service.open_case_readings(reader, case)), seen.facts, plan.model)
    for item in seen.items:
        service.start_review(reader, item)
    first, region = seen.items[0], None
    for event, gap in enumerate(drawn.gaps):
        if event < drawn.regions_opened:
            structure, rank, ml = seen.regions[event]
            region = service.open_region(reader, first.image_id, first.configuration_id, structure, rank,
                                         seen.fraction, ml)
        clock.tick(gap)
        if event < len(drawn.gaps) - 1:
            service.report_activity(reader, region)
    edits = seen.wrong or frozenset(seen.items)
    for item in seen.items:
        if drawn.decision == "edited" and item in edits:
            service.record_decision(reader, item, "edited", "simulated edit (scripted reader)")
        else:
            service.record_decision(reader, item, "accepted", None)
    return drawn


def study_line(settings: Settings, name: str = SIMULATED_STUDY) -> str:
    """The demo's line on the simulated study: where to see it and its primary result (the measurements read through
    the service as the command line, audited like ``study-report``)."""
    engine = make_engine(settings.database_url)
    try:
        service = ReviewService(engine, review=settings.review)
        study = service.show_study(CommandLine(), name).study
        readings = service.study_measurements(CommandLine(), name, ArtifactStore(settings.artifacts_dir),
                                              settings.review)
    finally:
        engine.dispose()
    analysis = analyse_study(readings, study.design, study.endpoint, study.seed)
    return (f"Simulated review study (scripted readers, made-up model: not evidence; docs/review-study.md): "
            f"/study/{name}, {len(readings)} readings, primary endpoint {analysis.primary.endpoint.value}: "
            f"{difference_line(analysis.primary, analysis.confidence)}; `python -m pipeline study-report {name}`.")
