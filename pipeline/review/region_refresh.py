"""Bring every deployed result's stored review regions up to the review settings in force, without inference.

The batch stores a result's regions at the review settings' ``region_budgets`` and the run's budget
(:mod:`pipeline.store.stored_regions`) when it processes a case, and skips unchanged cases. So results stored before
those rows existed (revisions 0011 and 0012), or with other region settings (connectivity, search radius, merging
distance, minimum size), keep the worklist's slower path, reading every case's maps, until their case is redone.
:func:`refresh_regions` finds those results and stores their regions from their maps with the same call the worklist
makes (:func:`pipeline.review.worklist.case_regions`), one result per transaction: a result whose maps are missing
or unreadable is listed and the others go on; a second call finds nothing to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import InputError
from pipeline.metrics.review_budget import Budget
from pipeline.review.worklist import ResultRef, case_regions, run_metric_settings
from pipeline.settings import ReviewSettings
from pipeline.store.artifacts import ArtifactError, ArtifactStore
from pipeline.store.deployed import deployed_result
from pipeline.store.schema import Artifact, CaseResult, Configuration, Image, ModelSet, TemperatureFit
from pipeline.store.stored_regions import ResultRegions, regions_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshSummary:
    """``results``: deployed results with voxel maps looked at; ``refreshed``: those whose regions were stored now;
    ``failed``: ``case / configuration: reason`` of each result left as it was."""

    results: int
    refreshed: int
    failed: tuple[str, ...]

    def describe(self) -> str:
        current = self.results - self.refreshed - len(self.failed)
        line = (f"refresh-regions: stored the regions of {self.refreshed} of {self.results} result(s) with maps; "
                f"{current} were up to date, {len(self.failed)} failed")
        return line + "".join(f"\n  left as it was: {failure}" for failure in self.failed)


def _wanted_budgets(session: Session, result: CaseResult, settings: ReviewSettings) -> list[float]:
    """The budgets the batch would store regions at for ``result``: the region budgets and the run's budget, within
    the run's budget range."""
    run_budget = session.scalar(select(Artifact.budget).where(Artifact.result_id == result.id,
                                                              Artifact.kind == "budget_mask"))
    cap = run_metric_settings(session, result).budget_max
    return sorted(b for b in {*settings.region_budgets, *([run_budget] if run_budget is not None else [])}
                  if b <= cap)


def _up_to_date(session: Session, result_id: int, budgets: list[float], settings: ReviewSettings) -> bool:
    stored = set(session.scalars(select(ResultRegions.budget).where(
        ResultRegions.result_id == result_id, ResultRegions.connectivity == settings.connectivity,
        ResultRegions.structure_search_mm == settings.structure_search_mm,
        ResultRegions.merge_distance_mm == settings.merge_distance_mm,
        ResultRegions.min_region_ml == settings.min_region_ml)))
    return set(budgets) <= stored


def _results_with_maps(session: Session, configuration: str | None) -> list[tuple[int, str, str]]:
    """(result id, case, configuration) of every deployed result that has an entropy map."""
    query = (select(CaseResult.id, Image.name, Configuration.name)
             .join(Image, Image.id == CaseResult.image_id)
             .join(Configuration, Configuration.id == CaseResult.configuration_id)
             .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
             .where(deployed_result(), select(Artifact.id).where(Artifact.result_id == CaseResult.id,
                                                                 Artifact.kind == "entropy").exists())
             .order_by(Image.name, Configuration.name, CaseResult.id))
    if configuration is not None:
        query = query.where(Configuration.name == configuration)
    return [(int(i), str(case), str(name)) for i, case, name in session.execute(query)]


def _refresh_one(session: Session, artifacts: ArtifactStore, result_id: int, settings: ReviewSettings) -> bool:
    """Store one result's regions when they are not up to date; whether it did."""
    result = session.get_one(CaseResult, result_id)
    budgets = _wanted_budgets(session, result, settings)
    if _up_to_date(session, result_id, budgets, settings):
        return False
    image = session.get_one(Image, result.image_id)
    labels = session.scalar(select(ModelSet.labels).join(Configuration, Configuration.model_set_id == ModelSet.id)
                            .where(Configuration.id == result.configuration_id)) or []
    ref = ResultRef(result, image, tuple(str(label) for label in labels))
    rows = []
    for budget in budgets:
        found, _, _ = case_regions(session, artifacts, ref, Budget("fraction", budget), settings)
        rows.append({"result_id": result_id} | regions_row(found.regions, budget, settings))
    session.execute(delete(ResultRegions).where(ResultRegions.result_id == result_id))
    if rows:
        session.execute(insert(ResultRegions), rows)
    return True


def refresh_regions(sessions: sessionmaker, artifacts: ArtifactStore, settings: ReviewSettings,
                    configuration: str | None = None) -> RefreshSummary:
    """Store the regions of every deployed result with maps (of ``configuration`` only, when given) whose stored
    regions miss a budget or were found with other region settings (module docstring); InputError for a configuration
    that no model set has."""
    with sessions() as session:
        if configuration is not None and session.scalar(
                select(Configuration.id).where(Configuration.name == configuration).limit(1)) is None:
            known = ", ".join(sorted(set(session.scalars(select(Configuration.name))))) or "none stored yet"
            raise InputError(f"--configuration {configuration[:100]!r}: no such configuration (known: {known})")
        targets = _results_with_maps(session, configuration)
    refreshed, failed = 0, []
    for result_id, case, name in targets:
        try:
            with sessions.begin() as session:
                refreshed += _refresh_one(session, artifacts, result_id, settings)
        except (LookupError, ArtifactError) as error:
            log.warning("refresh-regions: %s / %s left as it was (%s)", case, name, error)
            failed.append(f"{case} / {name}: {error}")
    return RefreshSummary(len(targets), refreshed, tuple(failed))
