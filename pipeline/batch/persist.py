"""Writing the batch's results: model sets and their grid, and one case's rows in one transaction (bulk inserts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from pipeline.inference.grid import Configuration as GridConfiguration
from pipeline.inference.model_set import ModelSet as LoadedModelSet
from pipeline.store.deployed import DEPLOYED_ROLES
from pipeline.store.metric_values import insert_values
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    Member,
    MetricValue,
    ModelSet,
    Patient,
    Processing,
    ReliabilityBin,
    StructureResult,
    TemperatureFit,
)
from pipeline.store.stored_regions import ResultRegions


def ensure_model_set(session: Session, model_set: LoadedModelSet, grid: Sequence[GridConfiguration], source: str
                     ) -> tuple[ModelSet, dict[str, Configuration]]:
    """The model set's row (created on first sight, keyed by its identity) and its configurations by name."""
    row = session.scalar(select(ModelSet).where(ModelSet.identity == model_set.identity()))
    if row is None:
        row = ModelSet(identity=model_set.identity(), name=model_set.folder.name, source=source,
                       nnunet_configuration=model_set.configuration, labels=list(model_set.labels))
        row.members = [Member(name=m.name, checkpoint=str(m.checkpoint), sha256=m.sha256) for m in model_set.members]
        session.add(row)
        session.flush()
    known = {c.name: c for c in row.configurations}
    for position, configuration in enumerate(grid):
        if configuration.name not in known:
            created = Configuration(name=configuration.name, position=position, members=list(configuration.members),
                                    views=[list(v) for v in configuration.views],
                                    temperature_scaling=configuration.temperature_scaling,
                                    sweep=configuration.sweep)
            row.configurations.append(created)
            known[configuration.name] = created
    session.flush()
    return row, known


def deployed_fits(session: Session, configurations: dict[str, Configuration]) -> dict[str, list[TemperatureFit]]:
    """The deployed fits (whole cohort and cross-fits) of each TS configuration that has any; a case takes the one
    :func:`pipeline.store.deployed.fit_for` picks."""
    fits: dict[str, list[TemperatureFit]] = {}
    for name, configuration in configurations.items():
        if not configuration.temperature_scaling:
            continue
        found = list(session.scalars(select(TemperatureFit).where(
            TemperatureFit.configuration_id == configuration.id, TemperatureFit.role.in_(DEPLOYED_ROLES))))
        if found:
            fits[name] = found
    return fits


@dataclass(frozen=True)
class ImageRecord:
    """The ``images`` columns of a case (with its patient pseudonym)."""

    name: str
    patient: str
    values: dict[str, Any]
    mrn_hash: str | None = None


def upsert_image(session: Session, record: ImageRecord) -> Image:
    """Create or update the case's patient and image rows."""
    patient = session.scalar(select(Patient).where(Patient.pseudonym == record.patient))
    if patient is None:
        patient = Patient(pseudonym=record.patient, mrn_hash=record.mrn_hash)
        session.add(patient)
        session.flush()
    elif record.mrn_hash is not None:
        patient.mrn_hash = record.mrn_hash
    image = session.scalar(select(Image).where(Image.name == record.name))
    if image is None:
        image = Image(name=record.name, patient_id=patient.id, **record.values)
        session.add(image)
    else:
        image.patient_id = patient.id
        for key, value in record.values.items():
            setattr(image, key, value)
    session.flush()
    return image


def refresh_acquisition(session: Session, name: str, acquisition: dict[str, Any] | None) -> bool:
    """Store the acquisition of a case the batch skips (unchanged input) where it differs from the stored one: a
    manifest column changed, or the row predates acquisitions. It describes the scan and enters no result, so it is
    not part of the input hash and never makes the batch redo a case. True when the row changed."""
    image = session.scalar(select(Image).where(Image.name == name))
    if image is None or image.acquisition == acquisition:
        return False
    image.acquisition = acquisition
    return True


@dataclass(frozen=True)
class ResultRows:
    """One configuration's rows, ready for insertion (the result id is filled in by :func:`write_results`)."""

    configuration_id: int
    temperature_fit_id: int | None
    result: dict[str, Any]
    values: list[dict[str, Any]]
    structures: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    bins: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    regions: Sequence[dict[str, Any]] = ()


COST_COLUMNS = ("forward_passes", "seconds_inference", "device")


def twin_cost(session: Session, processing_id: int, twin_id: int) -> dict[str, Any]:
    """The cost columns of the uncalibrated twin's result in the same processing: what a TS result the protocol
    writes costs (the same passes and pool; applying T is negligible). NULLs when the twin has none."""
    row = session.execute(select(*(getattr(CaseResult, c) for c in COST_COLUMNS)).where(
        CaseResult.processing_id == processing_id, CaseResult.configuration_id == twin_id,
        CaseResult.temperature_fit_id.is_(None))).first()
    return dict(zip(COST_COLUMNS, row if row is not None else (None,) * len(COST_COLUMNS), strict=True))


def write_results(session: Session, image: Image, processing_id: int, results: Sequence[ResultRows]) -> None:
    """Insert the results and their children: one row per result, then one bulk insert per child table (the metric
    values through :mod:`pipeline.store.metric_values`; the stored review regions, where computed)."""
    written = []
    for rows in results:
        result = CaseResult(processing_id=processing_id, image_id=image.id, configuration_id=rows.configuration_id,
                            temperature_fit_id=rows.temperature_fit_id, **rows.result)
        session.add(result)
        session.flush()
        written.append((result, rows))
    _insert_children(session, written)


def rewrite_result(session: Session, result: CaseResult, rows: ResultRows) -> None:
    """Replace a stored result's columns and children with ``rows`` in place: its id, and so the review rows that
    hang off it, stay."""
    for key, value in rows.result.items():
        setattr(result, key, value)
    for table in (MetricValue, StructureResult, CurvePoint, ReliabilityBin, Artifact, ResultRegions):
        session.execute(delete(table).where(table.result_id == result.id))
    session.flush()
    _insert_children(session, [(result, rows)])


def _insert_children(session: Session, written: Sequence[tuple[CaseResult, ResultRows]]) -> None:
    children: dict[type, list[dict[str, Any]]] = {StructureResult: [], CurvePoint: [], ReliabilityBin: [],
                                                  Artifact: [], ResultRegions: []}
    values: list[dict[str, Any]] = []
    for result, rows in written:
        values += [{"result_id": result.id} | r for r in rows.values]
        children[StructureResult] += [{"result_id": result.id} | r for r in rows.structures]
        children[CurvePoint] += [{"result_id": result.id} | r for r in rows.curve]
        children[ReliabilityBin] += [{"result_id": result.id} | r for r in rows.bins]
        children[Artifact] += [{"result_id": result.id, "image_id": result.image_id,
                                "processing_id": result.processing_id, "configuration_id": rows.configuration_id} | r
                               for r in rows.artifacts]
        children[ResultRegions] += [{"result_id": result.id} | r for r in rows.regions]
    insert_values(session, values)
    for table, items in children.items():
        if items:
            session.execute(insert(table), items)


def replace_processing(session: Session, image: Image, model_set: ModelSet, values: dict[str, Any],
                       image_artifacts: Sequence[dict[str, Any]], processing_artifacts: Sequence[dict[str, Any]]
                       ) -> Processing:
    """Delete the image's earlier processing by this model set (its results cascade) and insert the new one.

    ``image_artifacts`` (CT, reference) replace the image's; ``processing_artifacts`` (pooled probabilities) belong
    to the new processing.
    """
    session.execute(delete(Processing).where(Processing.image_id == image.id,
                                             Processing.model_set_id == model_set.id))
    session.execute(delete(Artifact).where(Artifact.image_id == image.id, Artifact.processing_id.is_(None),
                                           Artifact.result_id.is_(None)))
    processing = Processing(image_id=image.id, model_set_id=model_set.id, **values)
    session.add(processing)
    session.flush()
    rows = [{"image_id": image.id, "processing_id": None, "result_id": None, "configuration_id": None} | a
            for a in image_artifacts]
    rows += [{"image_id": image.id, "processing_id": processing.id, "result_id": None} | a
             for a in processing_artifacts]
    if rows:
        session.execute(insert(Artifact), rows)
    return processing
