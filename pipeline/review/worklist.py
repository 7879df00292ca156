"""The worklist read from the store: for one configuration and budget, every case's ranked review regions, grouped
by structure with each structure's review state, cases ranked by score (:mod:`pipeline.metrics.regions`).

A case's result is the newest one of the configuration with no protocol fit (for TS configurations: the deployed
temperature). At the budgets the batch stored its regions at (``ReviewSettings.region_budgets``), they are read from
the store (:mod:`pipeline.store.stored_regions`: no map is read); a time budget is capped at the run's ``budget_max``
and rounded down to those budgets per case (:meth:`~pipeline.metrics.review_budget.Budget.fraction`). Otherwise its
U_b comes from the stored maps: for a budget at or below the stored mask's, the stored mask's highest-entropy voxels
(:func:`~pipeline.metrics.review_budget.narrow_budget_mask`); above it, the ROI is grown again from the stored
prediction (and reference) with the metric settings its run stored (``runs.options``), and U_b taken from it (a
warning is logged when its size differs from the stored ``roi_voxels``).

``expected_recall`` estimates the share of a case's contour errors that its budget captures: the cohort's mean error
recall at that budget over the configuration's results that have a reference (None without any). The items of a
case are its predicted structures, the structures flagged ``empty_prediction`` (nothing predicted where the reference
has it, or anything unpredicted without a reference: :data:`EMPTY_PREDICTION`, the reviewer contours it whole), plus
any structure its regions were assigned to. A case without a reference is :data:`NO_REFERENCE`; each case carries
its stored out-of-distribution score (:mod:`pipeline.store.ood`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from pipeline.errors import NotFoundError
from pipeline.metrics.regions import CaseRegions, Region, case_score, find_regions, rank_cases
from pipeline.metrics.review_budget import Budget, narrow_budget_mask, top_budget_mask
from pipeline.metrics.roi import roi_of
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.review.workflow import State
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactError, ArtifactStore
from pipeline.store.configurations import resolve_configuration
from pipeline.store.deployed import deployed_result
from pipeline.store.ood import describe_ood
from pipeline.store.review_schema import ReviewItem, User
from pipeline.store.run_settings import processing_settings
from pipeline.store.schema import (
    Artifact,
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    ModelSet,
    StructureResult,
    TemperatureFit,
)
from pipeline.store.stored_regions import stored_regions

log = logging.getLogger(__name__)

EMPTY_PREDICTION = "empty prediction: review the whole structure"
NO_REFERENCE = "no reference yet"


@dataclass(frozen=True)
class WorklistItem:
    """One structure of one case: its review state and its regions (best first)."""

    class_index: int
    structure: str
    state: State
    decision: str | None
    comment: str | None
    reviewer: str | None
    approver: str | None
    version: int
    regions: tuple[Region, ...]
    empty_prediction: bool = False


@dataclass(frozen=True)
class WorklistCase:
    """One case of the worklist. ``fraction`` is its budget as a fraction of ROI voxels (``capped``: a time budget
    that exceeded the maximum); ``empty_prediction``: the configuration predicted no foreground at all; ``ood``:
    the stored out-of-distribution score's words (:func:`pipeline.store.ood.describe_ood`), ``ood_flag`` its flag."""

    rank: int
    case: str
    image_id: int
    configuration_id: int
    result_id: int
    has_reference: bool
    fraction: float
    capped: bool
    flagged_ml: float
    score: float
    expected_recall: float | None
    regions: tuple[Region, ...]
    items: tuple[WorklistItem, ...]
    empty_prediction: bool = False
    ood: str = ""
    ood_flag: bool | None = None


@dataclass(frozen=True)
class Worklist:
    """The ranked cases of one configuration of one model set (``model_set``: its identity) at one budget;
    ``skipped``: one line per case whose maps are missing."""

    configuration: str
    budget: Budget
    cases: tuple[WorklistCase, ...]
    skipped: tuple[str, ...] = ()
    model_set: str = ""

    def unreviewed(self) -> int:
        """Items neither reviewed nor approved."""
        return sum(item.state in (State.PENDING, State.IN_REVIEW) for case in self.cases for item in case.items)


def in_group(worklist: Worklist, groups: dict[int, str], group: str) -> Worklist:
    """The worklist's cases whose image is in ``group`` (``groups``: image id → acquisition group,
    :func:`pipeline.store.strata.image_groups`), ranks kept: the list narrowed to one scanner, kernel, …"""
    return replace(worklist, cases=tuple(c for c in worklist.cases if groups.get(c.image_id) == group))


@dataclass(frozen=True)
class ResultRef:
    """What locating one case's maps needs."""

    result: CaseResult
    image: Image
    labels: tuple[str, ...]


def deployed_results(session: Session, configuration: str, case: str | None = None,
                     model_set: str | None = None) -> list[ResultRef]:
    """The newest deployed result of ``configuration`` of one model set (``model_set``, or the newest with a result
    of it: :func:`~pipeline.store.configurations.resolve_configuration`) per case (of ``case`` only, when given)."""
    chosen = resolve_configuration(session, configuration, model_set)
    query = (select(CaseResult, Image, ModelSet.labels)
             .join(Image, Image.id == CaseResult.image_id)
             .join(Configuration, Configuration.id == CaseResult.configuration_id)
             .join(ModelSet, ModelSet.id == Configuration.model_set_id)
             .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
             .where(Configuration.id == chosen.id, deployed_result())
             .order_by(Image.name, CaseResult.id.desc()))
    if case is not None:
        query = query.where(Image.name == case)
    newest: dict[int, ResultRef] = {}
    for result, image, labels in session.execute(query):
        newest.setdefault(image.id, ResultRef(result, image, tuple(str(label) for label in labels)))
    return list(newest.values())


def _maps(session: Session, ref: ResultRef) -> dict[str, Artifact]:
    rows = session.scalars(select(Artifact).where(
        (Artifact.result_id == ref.result.id) | ((Artifact.image_id == ref.image.id) & (Artifact.kind == "reference"))
    ))
    return {row.kind: row for row in rows}


def spacing_zyx(image: Image) -> tuple[float, float, float]:
    """The image's voxel size (z, y, x) in mm (the store keeps SimpleITK's x, y, z)."""
    x, y, z = (float(v) for v in image.spacing)
    return (z, y, x)


def budget_mask(
    artifacts: ArtifactStore, maps: dict[str, Artifact], ref: ResultRef, fraction: float,
    metric_settings: MetricSettings,
) -> tuple[NDArray[np.bool_], NDArray[np.float16], NDArray[np.uint8]]:
    """U_b of one result at ``fraction``, with its entropy and prediction maps (module docstring)."""
    missing = {"entropy", "prediction", "budget_mask"} - set(maps)
    if missing:
        raise NotFoundError(f"case {ref.image.name!r} has no stored {', '.join(sorted(missing))} map")
    entropy = artifacts.read(maps["entropy"].path)
    prediction = artifacts.read(maps["prediction"].path)
    stored_budget = maps["budget_mask"].budget
    if ref.result.roi_voxels == 0:  # an empty prediction without a reference: no ROI, nothing to flag
        return np.zeros(entropy.shape, dtype=bool), entropy, prediction
    if stored_budget is not None and fraction <= stored_budget:
        stored = artifacts.read(maps["budget_mask"].path).astype(bool)
        return narrow_budget_mask(stored, entropy, ref.result.roi_voxels, fraction), entropy, prediction
    reference = artifacts.read(maps["reference"].path) if ref.result.has_reference and "reference" in maps else None
    roi = roi_of(prediction, reference, spacing_zyx(ref.image), metric_settings).dense()
    if int(roi.sum()) != ref.result.roi_voxels:
        log.warning("case %s: the regrown ROI has %d voxels, the stored result %d (other metric settings?)",
                    ref.image.name, int(roi.sum()), ref.result.roi_voxels)
    return top_budget_mask(entropy, roi, fraction), entropy, prediction


def run_metric_settings(session: Session, result: CaseResult) -> MetricSettings:
    """The metric settings of the run that computed ``result`` (its processing's run); the spec's defaults, with a
    warning, when the run is gone or stored none."""
    settings = processing_settings(session, result.processing_id)
    if settings is None:
        log.warning("result %d: its run's metric settings are not stored; using the defaults", result.id)
        return DEFAULT_SETTINGS
    return settings


def case_fraction(session: Session, ref: ResultRef, budget: Budget, settings: ReviewSettings) -> tuple[float, bool]:
    """The fraction of one case's ROI voxels ``budget`` flags and whether it was capped: a time budget at the review
    settings' rate, capped at the budget range of the run that stored the result and rounded down to the stored
    region budgets (:meth:`~pipeline.metrics.review_budget.Budget.fraction`)."""
    if budget.kind == "fraction":
        return budget.value, False
    return budget.fraction(ref.result.roi_voxels, ref.result.voxel_ml, settings.seconds_per_ml,
                           run_metric_settings(session, ref.result).budget_max, settings.region_budgets)


def case_regions(
    session: Session, artifacts: ArtifactStore, ref: ResultRef, budget: Budget,
    settings: ReviewSettings | None = None,
) -> tuple[CaseRegions, float, bool]:
    """The regions of one case at ``budget``, from its maps, the fraction it became and whether it was capped (the ROI
    and the cap follow the metric settings of the run that stored the result)."""
    settings = settings or ReviewSettings()
    metric_settings = run_metric_settings(session, ref.result)
    fraction, capped = case_fraction(session, ref, budget, settings)
    mask, entropy, prediction = budget_mask(artifacts, _maps(session, ref), ref, fraction, metric_settings)
    return find_regions(mask, entropy, prediction, spacing_zyx(ref.image), settings), fraction, capped


def recall_curve(session: Session, configuration_id: int) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """The cohort's mean error recall per budget over the reference-backed deployed results of one configuration."""
    query = (select(CurvePoint.budget, func.avg(CurvePoint.recall))
             .join(CaseResult, CaseResult.id == CurvePoint.result_id)
             .join(Configuration, Configuration.id == CaseResult.configuration_id)
             .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
             .where(Configuration.id == configuration_id, CaseResult.has_reference.is_(True),
                    deployed_result(), CurvePoint.recall.is_not(None))
             .group_by(CurvePoint.budget).order_by(CurvePoint.budget))
    rows = session.execute(query).all()
    if not rows:
        return None
    return np.array([r[0] for r in rows], dtype=np.float64), np.array([r[1] for r in rows], dtype=np.float64)


def _expected(curve: tuple[NDArray[np.float64], NDArray[np.float64]] | None, fraction: float) -> float | None:
    if curve is None or fraction > curve[0][-1] + 1e-12:
        return None
    return float(np.interp(fraction, curve[0], curve[1]))


def review_states(session: Session, configuration_ids: set[int]) -> dict[tuple[int, int, int], dict[str, Any]]:
    """(image id, configuration id, class index) → the stored review item's fields, with user names."""
    reviewer, approver = aliased(User), aliased(User)
    query = (select(ReviewItem, reviewer.username, approver.username)
             .outerjoin(reviewer, reviewer.id == ReviewItem.reviewer_id)
             .outerjoin(approver, approver.id == ReviewItem.approver_id)
             .where(ReviewItem.configuration_id.in_(configuration_ids)))
    return {(item.image_id, item.configuration_id, item.class_index): {
        "state": State(item.state), "decision": item.decision, "comment": item.comment, "reviewer": reviewer_name,
        "approver": approver_name, "version": item.version,
    } for item, reviewer_name, approver_name in session.execute(query)}


def review_classes(session: Session, result_ids: list[int]) -> dict[int, dict[int, bool]]:
    """Per result: its foreground structures to review (predicted, or flagged empty) → whether flagged empty."""
    rows = session.execute(select(StructureResult.result_id, StructureResult.class_index,
                                  StructureResult.empty_prediction).where(
        StructureResult.result_id.in_(result_ids), StructureResult.class_index > 0,
        (StructureResult.predicted_ml > 0) | StructureResult.empty_prediction))
    found: dict[int, dict[int, bool]] = {}
    for result_id, class_index, empty in rows:
        found.setdefault(result_id, {})[class_index] = bool(empty)
    return found


def _items(ref: ResultRef, regions: tuple[Region, ...], classes: dict[int, bool],
           states: dict[tuple[int, int, int], dict[str, Any]]) -> tuple[WorklistItem, ...]:
    items = []
    for class_index in sorted(set(classes) | {r.class_index for r in regions}):
        stored = states.get((ref.image.id, ref.result.configuration_id, class_index), {})
        items.append(WorklistItem(
            class_index=class_index, structure=ref.labels[class_index] if class_index < len(ref.labels) else "?",
            state=stored.get("state", State.PENDING), decision=stored.get("decision"),
            comment=stored.get("comment"), reviewer=stored.get("reviewer"), approver=stored.get("approver"),
            version=stored.get("version", 0), regions=tuple(r for r in regions if r.class_index == class_index),
            empty_prediction=classes.get(class_index, False),
        ))
    return tuple(items)


def build_worklist(
    session: Session, artifacts: ArtifactStore, configuration: str, budget: Budget,
    settings: ReviewSettings | None = None, case: str | None = None, model_set: str | None = None,
) -> Worklist:
    """The worklist of ``configuration`` of one model set (``model_set``, else the newest with a result of it) at
    ``budget``; of ``case`` alone when given (its rank is then 1). At a budget the batch stored regions at (the
    review settings' ``region_budgets``, same region settings; a time budget is rounded down to them per case) a
    case's regions are read from ``result_regions``; at any other budget, or for a result stored without them, from
    its maps (cache the worklist in a UI).

    Raises LookupError when the store has no result of ``configuration`` (for ``case``); a case whose maps are
    missing or unreadable is left out and listed in :attr:`Worklist.skipped` (and logged).
    """
    settings = settings or ReviewSettings()
    chosen = resolve_configuration(session, configuration, model_set)
    refs = deployed_results(session, configuration, case, model_set)
    if not refs:
        raise NotFoundError(f"case {case!r} has no stored result of configuration {configuration!r}")
    curve = recall_curve(session, chosen.id)
    states = review_states(session, {ref.result.configuration_id for ref in refs})
    classes = review_classes(session, [ref.result.id for ref in refs])
    fractions = {ref.result.id: case_fraction(session, ref, budget, settings) for ref in refs}
    stored: dict[int, tuple[Region, ...]] = {}
    for fraction in {f for f, _ in fractions.values()}:
        stored |= stored_regions(session, [i for i, (f, _) in fractions.items() if f == fraction], fraction, settings)
    found: dict[str, tuple[ResultRef, tuple[Region, ...], float, bool]] = {}
    skipped = []
    for ref in refs:
        if ref.result.id in stored:
            found[ref.image.name] = (ref, stored[ref.result.id], *fractions[ref.result.id])
            continue
        try:
            regions, fraction, capped = case_regions(session, artifacts, ref, budget, settings)
        except (LookupError, ArtifactError) as error:
            log.warning("worklist %s: skipped %s (%s)", configuration, ref.image.name, error)
            skipped.append(f"{ref.image.name}: {error}")
            continue
        found[ref.image.name] = (ref, regions.regions, fraction, capped)
    order = rank_cases({name: entry[1] for name, entry in found.items()})
    cases = []
    for rank, name in enumerate(order, start=1):
        ref, case_found, fraction, capped = found[name]
        cases.append(WorklistCase(
            rank=rank, case=name, image_id=ref.image.id, configuration_id=ref.result.configuration_id,
            result_id=ref.result.id, has_reference=ref.result.has_reference, fraction=fraction, capped=capped,
            flagged_ml=float(sum(r.volume_ml for r in case_found)), score=case_score(case_found),
            expected_recall=_expected(curve, fraction), regions=case_found,
            items=_items(ref, case_found, classes.get(ref.result.id, {}), states),
            empty_prediction=ref.result.empty_prediction, ood_flag=ref.result.ood_flag,
            ood=describe_ood(ref.result.ood_percentile, ref.result.ood_reference_n, ref.result.ood_flag),
        ))
    identity = session.scalar(select(ModelSet.identity).where(ModelSet.id == chosen.model_set_id)) or ""
    return Worklist(configuration=configuration, budget=budget, cases=tuple(cases), skipped=tuple(skipped),
                    model_set=identity)


def unreviewed_count(session: Session, configuration: str, model_set: str | None = None) -> int:
    """The header badge: predicted (or flagged empty) structures of ``configuration``'s cases (one model set) not yet
    reviewed or approved.

    Pure SQL (no maps): structures with predicted volume or flagged empty, per newest non-protocol result, minus the
    review items in ``reviewed`` or ``approved``. Regions assigned to a structure that was not predicted are not
    counted here.
    """
    refs = deployed_results(session, configuration, model_set=model_set)
    predicted = review_classes(session, [ref.result.id for ref in refs])
    states = review_states(session, {ref.result.configuration_id for ref in refs})
    done = {State.REVIEWED, State.APPROVED}
    return sum(
        states.get((ref.image.id, ref.result.configuration_id, c), {}).get("state") not in done
        for ref in refs for c in predicted.get(ref.result.id, {})
    )


def default_configuration(session: Session, chosen: str | None = None) -> str | None:
    """The configuration to review: ``chosen`` (the settings' review configuration) when given, else the first
    configuration (grid order) of the newest model set with a stored result; None when the store holds no result."""
    if chosen:
        return chosen
    newest = session.scalar(select(Configuration.model_set_id).join(
        CaseResult, CaseResult.configuration_id == Configuration.id).order_by(CaseResult.id.desc()).limit(1))
    if newest is None:
        return None
    return session.scalar(select(Configuration.name).where(Configuration.model_set_id == newest)
                          .order_by(Configuration.position).limit(1))


def with_current_states(session: Session, worklist: Worklist) -> Worklist:
    """``worklist`` with every item's review fields re-read from the store (the regions stay: a cached worklist's
    maps do not change when someone reviews, its review states do)."""
    states = review_states(session, {case.configuration_id for case in worklist.cases})

    def fresh(case: WorklistCase, item: WorklistItem) -> WorklistItem:
        stored = states.get((case.image_id, case.configuration_id, item.class_index), {})
        return replace(item, state=stored.get("state", State.PENDING), decision=stored.get("decision"),
                       comment=stored.get("comment"), reviewer=stored.get("reviewer"),
                       approver=stored.get("approver"), version=stored.get("version", 0))

    return replace(worklist, cases=tuple(replace(case, items=tuple(fresh(case, item) for item in case.items))
                                         for case in worklist.cases))
