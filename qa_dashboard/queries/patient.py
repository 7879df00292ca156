"""One case for the slice browser: its image, the result shown per configuration, the maps and the metrics.

Per configuration the browser shows one result: an uncalibrated configuration's only result, and for a TS
configuration the result of the deployed temperature fit (no protocol) — what the nightly batch applies to every
case. Class probabilities of a TS result are its uncalibrated twin's stored probabilities with its temperature; a
``per_member`` TS result (its temperature scaled the members before pooling, docs/metrics.md) shows none, since its
twin's map with its temperature is not what it was scored on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.io.acquisition import UNKNOWN, Acquisition
from pipeline.store.configurations import twin_of
from pipeline.store.deployed import deployed_result
from pipeline.store.metric_values import result_values
from pipeline.store.ood import describe_ood
from pipeline.store.references import reference_kind
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    ModelSet,
    Patient,
    StructureResult,
    TemperatureFit,
)
from pipeline.store.temperatures import Scaling, result_scaling


@dataclass(frozen=True)
class Case:
    """A case's image: name, cohort, patient pseudonym, geometry (SimpleITK x, y, z order), image maps, and how it
    was acquired (DICOM UIDs, :mod:`pipeline.io.acquisition`)."""

    id: int
    name: str
    cohort: str
    pseudonym: str
    size_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: tuple[float, ...]
    reference_note: str | None
    ct_path: str | None
    reference_path: str | None
    source_kind: str = "nifti"  # "dicom" when read from a DICOM series (an RTSTRUCT can reference it)
    reference_kind: str | None = None  # final_clinical or research (pipeline.store.references); None: no reference
    dicom_uids: tuple[str | None, str | None, str | None] = (None, None, None)  # study, series, frame of reference
    acquisition: Acquisition = UNKNOWN

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        x, y, z = self.size_xyz
        return z, y, x

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        x, y, z = self.spacing_xyz
        return z, y, x


@dataclass(frozen=True)
class ShownResult:
    """The result shown for one configuration, with its maps (kind → path) and what its numbers mean."""

    result_id: int
    configuration_id: int
    configuration: str
    model_set: str
    model_set_identity: str
    labels: tuple[str, ...]
    temperature: Scaling | None
    roi_voxels: int
    fit_cases: tuple[str, ...]
    maps: dict[str, str]
    mask_budget: float | None
    probabilities_path: str | None

    def label(self, with_model_set: bool) -> str:
        return f"{self.configuration} · {self.model_set}" if with_model_set else self.configuration


def find_case(session: Session, name: str) -> Case | None:
    """The case called ``name``, or None."""
    row = session.execute(select(Image, Patient.pseudonym).join(Patient, Patient.id == Image.patient_id)
                          .where(Image.name == name)).first()
    if row is None:
        return None
    image, pseudonym = row
    paths = dict(session.execute(select(Artifact.kind, Artifact.path).where(
        Artifact.image_id == image.id, Artifact.kind.in_(("ct", "reference")))).all())
    return Case(image.id, image.name, image.cohort, pseudonym, tuple(image.size), tuple(image.spacing),
                tuple(image.origin), tuple(image.direction), image.reference_note, paths.get("ct"),
                paths.get("reference"), image.source_kind,
                reference_kind(session, image.id, image.reference_hash is not None),
                (image.study_uid, image.series_uid, image.frame_of_reference_uid),
                Acquisition.from_record(image.acquisition))


def shown_results(session: Session, case: Case) -> list[ShownResult]:
    """One result per configuration of every model set that processed the case, in grid order; a sweep
    configuration's only when its maps were stored (``run --sweep-maps``: without them there is nothing to show)."""
    rows = session.execute(
        select(CaseResult, Configuration, ModelSet, TemperatureFit)
        .join(Configuration, Configuration.id == CaseResult.configuration_id)
        .join(ModelSet, ModelSet.id == Configuration.model_set_id)
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(CaseResult.image_id == case.id,
               deployed_result())
        .order_by(ModelSet.id, Configuration.position, CaseResult.id.desc())
    ).all()
    chosen: dict[int, tuple[CaseResult, Configuration, ModelSet, TemperatureFit | None]] = {}
    for result, configuration, model_set, fit in rows:
        chosen.setdefault(configuration.id, (result, configuration, model_set, fit))
    if not chosen:
        return []
    result_ids = [r.id for r, *_ in chosen.values()]
    maps: dict[int, dict[str, tuple[str, float | None]]] = {}
    for result_id, kind, path, budget in session.execute(
            select(Artifact.result_id, Artifact.kind, Artifact.path, Artifact.budget)
            .where(Artifact.result_id.in_(result_ids))):
        maps.setdefault(result_id, {})[kind] = (path, budget)
    probabilities = dict(session.execute(
        select(Artifact.configuration_id, Artifact.path)
        .where(Artifact.image_id == case.id, Artifact.kind == "probabilities")).all())
    twins = _twins(session, {c.model_set_id for _, c, _, _ in chosen.values()})
    shown = []
    for result, configuration, model_set, fit in chosen.values():
        kinds = maps.get(result.id, {})
        if configuration.sweep and "entropy" not in kinds:
            continue
        twin = twins.get(configuration.id, configuration.id)
        pooled_after = fit is None or fit.temperature_mode == "after_pooling"
        shown.append(ShownResult(
            result.id, configuration.id, configuration.name, model_set.name, model_set.identity,
            tuple(model_set.labels),
            result_scaling(fit, result.temperature), result.roi_voxels, tuple(fit.cases) if fit is not None else (),
            {k: p for k, (p, _) in kinds.items()}, kinds.get("budget_mask", (None, None))[1],
            probabilities.get(twin) if pooled_after else None))
    return shown


def _twins(session: Session, model_sets: set[int]) -> dict[int, int]:
    """Each TS configuration's uncalibrated twin (same members and views) by id."""
    configurations = session.scalars(select(Configuration).where(Configuration.model_set_id.in_(model_sets))).all()
    return {c.id: twin_of(c, configurations).id for c in configurations if c.temperature_scaling}


@dataclass(frozen=True)
class ResultMetrics:
    """A result's case-level metrics (every one of the registry, by name), its sizes (``roi_voxels``,
    ``error_voxels``, ``voxel_ml``), its structures' DSC and volumes, per budget the flagged volume (mL) and the
    error recall (the share of the error set E inside the top-budget mask; None without a reference), whether a
    reference backs it, which structures (class indices) and whether the whole prediction are flagged empty, and its
    out-of-distribution score in words."""

    values: dict[str, float | None]
    sizes: dict[str, float | None]
    structures: list[tuple[str, float | None, float, float | None]]
    flagged_ml: dict[float, float]
    recall: dict[float, float | None]
    has_reference: bool = True
    empty_prediction: bool = False
    empty_structures: frozenset[int] = frozenset()
    ood: str = ""


def result_metrics(session: Session, result_id: int) -> ResultMetrics:
    """The numbers shown beside the viewer."""
    result = session.get(CaseResult, result_id)
    if result is None:
        raise NotFoundError(f"no case result {result_id}")
    structures = session.execute(
        select(StructureResult.structure, StructureResult.dsc, StructureResult.predicted_ml,
               StructureResult.reference_ml).where(StructureResult.result_id == result_id)
        .order_by(StructureResult.class_index)).all()
    curve = session.execute(select(CurvePoint.budget, CurvePoint.flagged_ml, CurvePoint.recall)
                            .where(CurvePoint.result_id == result_id)).all()
    sizes = {"roi_voxels": result.roi_voxels, "error_voxels": result.error_voxels, "voxel_ml": result.voxel_ml}
    empty = frozenset(session.scalars(select(StructureResult.class_index).where(
        StructureResult.result_id == result_id, StructureResult.empty_prediction)))
    return ResultMetrics(result_values(session, result_id), sizes, list(structures),
                         {round(b, 6): v for b, v, _ in curve}, {round(b, 6): r for b, _, r in curve},
                         result.has_reference, result.empty_prediction, empty,
                         describe_ood(result.ood_percentile, result.ood_reference_n, result.ood_flag))
