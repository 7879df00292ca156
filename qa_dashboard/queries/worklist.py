"""The worklist as the dashboard shows it: the cached worklist of a configuration and budget with fresh review states,
and its rows for the case, region and review-item grids.

Computing a worklist reads every case's maps, so it is cached until the batch or a protocol changes the results
(:meth:`~qa_dashboard.store.Store.cached`); review states change by the minute and are re-read on every call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.metrics.regions import Region, slice_span
from pipeline.metrics.review_budget import Budget, ReviewRate
from pipeline.review.exports import case_state
from pipeline.review.timing import RegionKey, measured_rate, opened_regions
from pipeline.review.worklist import (
    EMPTY_PREDICTION,
    Worklist,
    WorklistCase,
    build_worklist,
    case_fraction,
    deployed_results,
    in_group,
    with_current_states,
)
from pipeline.settings import ReviewSettings
from pipeline.store.schema import Artifact, CaseResult, Configuration, ModelSet
from pipeline.store.strata import image_groups
from qa_dashboard.components import patient_href
from qa_dashboard.config import settings
from qa_dashboard.store import Store
from qa_dashboard.worklist_address import percent

#: review state (and decision) → the Bootstrap text class the grids colour it with
#: each review state's (and decision's, and a case's summary status's) badge: Bootstrap classes, colour never alone
#: (the badge shows the word); drawn by the grids' ``QaStateBadge`` renderer (assets/grid_badges.js)
STATE_BADGES = {"pending": "text-bg-light border", "in_review": "text-bg-primary", "reviewed": "text-bg-info",
                "accepted": "bg-success-subtle text-success-emphasis border border-success-subtle",
                "edited": "text-bg-warning", "rejected": "text-bg-danger", "approved": "text-bg-success"}
#: a grid column's renderer of :data:`STATE_BADGES`
STATE_BADGE_RENDERER = {"cellRenderer": "QaStateBadge", "cellRendererParams": {"badges": STATE_BADGES}}


def model_sets(session: Session) -> list[tuple[str, str]]:
    """(identity, name) of the model sets with a stored result, newest first."""
    return [(str(i), str(n)) for i, n in session.execute(
        select(ModelSet.identity, ModelSet.name).where(select(CaseResult.id).join(
            Configuration, Configuration.id == CaseResult.configuration_id)
            .where(Configuration.model_set_id == ModelSet.id).exists())
        .order_by(ModelSet.id.desc()))]


def configurations(session: Session, model_set: str | None = None) -> list[str]:
    """Names of the configurations with a stored result of ``model_set`` (identity; default the newest model set
    with a result), in grid order; a sweep configuration only with stored maps (``run --sweep-maps``: the worklist
    is found on them)."""
    chosen = model_set or next(iter(model_sets(session)), ("", ""))[0]
    return list(session.scalars(
        select(Configuration.name).join(ModelSet, ModelSet.id == Configuration.model_set_id)
        .where(ModelSet.identity == chosen,
               select(CaseResult.id).where(CaseResult.configuration_id == Configuration.id).exists(),
               ~Configuration.sweep | select(Artifact.id).where(Artifact.configuration_id == Configuration.id,
                                                                Artifact.kind == "entropy").exists())
        .order_by(Configuration.position)))


def rate_in_force(store: Store) -> ReviewRate:
    """The review rate in force: the department's measured median, or the placeholder until enough items are
    measured (:func:`pipeline.metrics.review_budget.review_rate`)."""
    with store.session() as session:
        return measured_rate(session, settings().review)


def _review_in_force(session: Session) -> ReviewSettings:
    """The review settings with the review rate in force (a time budget converts at it)."""
    return replace(settings().review, seconds_per_ml=measured_rate(session, settings().review).seconds_per_ml)


def load_worklist(store: Store, configuration: str, budget: Budget, case: str | None = None,
                  model_set: str | None = None) -> Worklist:
    """The worklist of ``configuration`` (of ``model_set``, default the newest with a result of it) at ``budget``, of
    ``case`` alone when given (LookupError when there is no such result); a time budget converts at the rate in
    force (:func:`rate_in_force`)."""
    with store.session() as session:
        review = _review_in_force(session)
        key = ("worklist", configuration, model_set, budget, review, case)
        cached = store.cached(session, key, lambda: build_worklist(
            session, store.maps.artifacts, configuration, budget, review, case=case, model_set=model_set))
        return with_current_states(session, cached)


def budget_fraction(store: Store, configuration: str, budget: Budget, case: str, model_set: str | None = None
                    ) -> float:
    """The fraction of ``case``'s ROI voxels that ``budget`` flags under ``configuration`` (of ``model_set``): a time
    budget at the rate in force, as the worklist converts it (:func:`pipeline.review.worklist.case_fraction`, without
    computing the worklist); LookupError when the case has no such result."""
    if budget.kind == "fraction":
        return budget.value
    with store.session() as session:
        refs = deployed_results(session, configuration, case, model_set)
        if not refs:
            raise NotFoundError(f"case {case!r} has no stored result of configuration {configuration!r}")
        return case_fraction(session, refs[0], budget, _review_in_force(session))[0]


def acquisition_groups(store: Store, worklist: Worklist, key: str) -> dict[int, str]:
    """The group of each of the worklist's cases in the stratum ``key`` (:mod:`pipeline.store.strata`), by image
    id."""
    with store.session() as session:
        return image_groups(session, key, {case.image_id for case in worklist.cases})


def narrowed(store: Store, worklist: Worklist, choice: tuple[str, str] | None) -> Worklist:
    """The worklist narrowed to one acquisition group (``choice``: stratum key, group;
    :func:`qa_dashboard.filters.acquisition_choice`), or whole when None: what the page lists and the exports write."""
    if choice is None:
        return worklist
    key, group = choice
    return in_group(worklist, acquisition_groups(store, worklist, key), group)


def status(states: list[str]) -> str:
    """A case's status from its items' states: the least advanced one wins."""
    for state in ("pending", "in_review", "reviewed", "approved"):
        if state in states:
            return state
    return "no items"


def case_rows(worklist: Worklist, rate: ReviewRate) -> list[dict[str, Any]]:
    """One row per case, in rank order; ``case`` is its name and ``case_href`` the slice browser at its top region;
    ``expected_minutes`` its flagged volume at the review ``rate``; its state as the exports write it
    (:func:`pipeline.review.exports.case_state`)."""
    rows = []
    for case in worklist.cases:
        top = case.regions[0].centroid if case.regions else None
        href = patient_href(case.case, a=case.configuration_id, at=",".join(map(str, top)) if top else None)
        rows.append({
            "rank": case.rank, "case": case.case, "case_href": href, "name": case.case,
            "budget_pct": round(100 * case.fraction, 3), "capped": "yes" if case.capped else "",
            "flagged_ml": round(case.flagged_ml, 2), "score": round(case.score, 3), "regions": len(case.regions),
            "expected_minutes": round(rate.minutes(case.flagged_ml), 1),
            "expected_recall": None if case.expected_recall is None else round(100 * case.expected_recall, 1),
            "unreviewed": sum(i.state.value in ("pending", "in_review") for i in case.items),
            "status": status([i.state.value for i in case.items]), **case_state(case),
        })
    return rows


def opened(store: Store, worklist: Worklist) -> dict[RegionKey, str]:
    """The worklist's regions a reviewer opened (the tick; :func:`pipeline.review.timing.opened_regions`), re-read
    on every call."""
    with store.session() as session:
        return opened_regions(session, {case.configuration_id for case in worklist.cases})


def region_href(worklist: Worklist, case: WorklistCase, region: Region) -> str:
    """The slice browser at ``region`` of ``case``: configuration A, the region's voxel, its rank, the case's budget
    in percent and the list's time budget (for "back to list"; ``qa_dashboard.worklist_address``)."""
    minutes = f"{worklist.budget.value:g}" if worklist.budget.kind == "minutes" else None
    return patient_href(case.case, a=case.configuration_id, at=",".join(map(str, region.centroid)),
                        region=region.rank, budget=percent(case.fraction), minutes=minutes)


def region_rows(worklist: Worklist, case: str | None = None,
                ticks: dict[RegionKey, str] | None = None) -> list[dict[str, Any]]:
    """One row per region (of ``case`` only, when given): where it is, how big and how uncertain, its item's state,
    and who opened it first (``ticks``: :func:`opened`)."""
    rows = []
    for entry in worklist.cases:
        if case is not None and entry.case != case:
            continue
        for item in entry.items:
            for region in item.regions:
                key = (entry.image_id, entry.configuration_id, item.class_index, region.rank, round(entry.fraction, 6))
                seen = (ticks or {}).get(key)
                rows.append({
                    "case_rank": entry.rank, "case": entry.case, "region": region.rank,
                    "open": "open", "open_href": region_href(worklist, entry, region),
                    "opened": "✓" if seen else "", "opened_by": seen or "",
                    "structure": item.structure, "volume_ml": round(region.volume_ml, 3),
                    "slices": slice_span(region.slices), "mean_entropy": round(region.mean_entropy, 3),
                    "max_entropy": round(region.max_entropy, 3), "state": item.state.value,
                })
    return sorted(rows, key=lambda row: (row["case_rank"], row["region"]))


def item_rows(worklist: Worklist, case: str | None = None) -> list[dict[str, Any]]:
    """One row per review item (a structure of a case), with the key and version the review actions need."""
    rows = []
    for entry in worklist.cases:
        if case is not None and entry.case != case:
            continue
        for item in entry.items:
            rows.append({
                "id": f"{entry.image_id}/{entry.configuration_id}/{item.class_index}",
                "image_id": entry.image_id, "configuration_id": entry.configuration_id,
                "class_index": item.class_index, "version": item.version, "case_rank": entry.rank,
                "case": entry.case, "structure": item.structure, "regions": len(item.regions),
                "flagged_ml": round(sum(r.volume_ml for r in item.regions), 3), "state": item.state.value,
                "decision": item.decision or "", "comment": item.comment or "", "reviewer": item.reviewer or "",
                "approver": item.approver or "",
                "note": EMPTY_PREDICTION if item.empty_prediction else "",
            })
    return rows


def expected_minutes(worklist: Worklist, rate: ReviewRate) -> float:
    """Expected review minutes of the whole list: its flagged volume at the review ``rate``."""
    return rate.minutes(sum(case.flagged_ml for case in worklist.cases))
