"""Cohort numbers of a protocol, exactly as ``docs/metrics.md`` defines them: the one owner of what the cohort and
comparison pages and the audit report (``pipeline.review.report``) show for a filter (:class:`CohortFilter`).

For each repeat r of the protocol the test cases of r count; an uncalibrated configuration contributes its result
without a temperature fit, a TS configuration the result of the fit of this protocol and repeat r
(``cohort_rows.counts_in_repeat``). Per-repeat means over test cases, then mean ± SD over repeats
(``summarise_repeats``); pooled reliability bins (``pooled_bins``); mean budget curves. Sums and means over cases are
done by the database, so the work grows with configurations and repeats, not with the cohort's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import CTE, Select, and_, func, select
from sqlalchemy.orm import Session

from pipeline.metrics import registry
from pipeline.metrics.calibration import ReliabilityBins
from pipeline.metrics.cohort import pooled_bins, summarise_repeats
from pipeline.store.cohort_rows import counts_in_repeat
from pipeline.store.metric_values import group_means, structure_values, with_values
from pipeline.store.references import reference_kind_is
from pipeline.store.schema import (
    CaseResult,
    Configuration,
    CurvePoint,
    Image,
    Processing,
    Protocol,
    ReliabilityBin,
    SplitRole,
    StructureResult,
    TemperatureFit,
)
from pipeline.store.strata import in_group

ALL_FOREGROUND = "all foreground"  # the rows of the whole case (every foreground structure)
CURVE_METRICS = ("ueo", "recall", "precision", "flagged_ml")


@dataclass(frozen=True)
class CohortFilter:
    """Which results count: a protocol, optionally some repeats, configurations, a processing date range, the
    cases' reference kind (:mod:`pipeline.store.references`) and their acquisition group: (stratum key, group) of
    :mod:`pipeline.store.strata` (``("scanner", "unknown")``)."""

    protocol_id: int
    repeats: tuple[int, ...] | None = None
    configurations: tuple[int, ...] | None = None
    start: date | None = None
    end: date | None = None
    reference_kind: str | None = None
    acquisition: tuple[str, str] | None = None



def configurations(session: Session, model_set_id: int) -> list[tuple[int, str]]:
    """(id, name) of a model set's configurations in grid order."""
    rows = session.execute(select(Configuration.id, Configuration.name)
                           .where(Configuration.model_set_id == model_set_id).order_by(Configuration.position))
    return [(int(i), str(n)) for i, n in rows]



def selection(session: Session, f: CohortFilter) -> Select:
    """(repeat, result_id, image_id, configuration_id) of every result that counts for ``f``."""
    query = (
        select(SplitRole.repeat.label("repeat"), CaseResult.id.label("result_id"),
               CaseResult.image_id.label("image_id"), Configuration.id.label("configuration_id"))
        .select_from(SplitRole)
        .join(Protocol, Protocol.id == SplitRole.protocol_id)
        .join(CaseResult, CaseResult.image_id == SplitRole.image_id)
        .join(Configuration, and_(Configuration.id == CaseResult.configuration_id,
                                  Configuration.model_set_id == Protocol.model_set_id))
        .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
        .where(counts_in_repeat(f.protocol_id))
    )
    if f.repeats is not None:
        query = query.where(SplitRole.repeat.in_(f.repeats))
    if f.configurations is not None:
        query = query.where(Configuration.id.in_(f.configurations))
    if f.reference_kind is not None:
        query = query.where(reference_kind_is(f.reference_kind, CaseResult.image_id))
    if f.acquisition is not None:
        query = query.where(in_group(session, *f.acquisition, CaseResult.image_id))
    if f.start is not None or f.end is not None:
        query = query.join(Processing, Processing.id == CaseResult.processing_id)
        if f.start is not None:
            query = query.where(Processing.completed_at >= datetime.combine(f.start, time.min))
        if f.end is not None:
            query = query.where(Processing.completed_at < datetime.combine(f.end + timedelta(days=1), time.min))
    return query


def chosen(session: Session, f: CohortFilter) -> CTE:
    """The selection as a materialised CTE: the database resolves it once, before joining the big tables."""
    return selection(session, f).cte("chosen").prefix_with("MATERIALIZED")


def _frame(session: Session, query: Select) -> pd.DataFrame:
    result = session.execute(query)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def case_metrics() -> tuple[str, ...]:
    """The case-level metrics of the registry: the metric columns of :func:`case_table` and :func:`summary`."""
    return registry.names(registry.case_metrics())


def case_table(session: Session, f: CohortFilter) -> pd.DataFrame:
    """One row per (repeat, test case, configuration): case name, configuration name and position, and every
    case-level metric of the registry."""
    picked = chosen(session, f)
    query = (
        select(picked.c.repeat, picked.c.image_id, Image.name.label("case"), picked.c.configuration_id,
               Configuration.name.label("configuration"), Configuration.position, picked.c.result_id)
        .join(Image, Image.id == picked.c.image_id)
        .join(Configuration, Configuration.id == picked.c.configuration_id)
    )
    return with_values(session, query).drop(columns="result_id")


def _in_structure_results() -> tuple[registry.Metric, ...]:
    """The structure-level metrics kept as columns of ``structure_results`` (the rest are in ``metric_values``)."""
    return tuple(m for m in registry.structure_metrics() if m.table == "structure_results")


def case_values(session: Session, f: CohortFilter) -> pd.DataFrame:
    """Every per-case number behind the cohort table, long: one row per (repeat, test case, configuration, structure,
    metric) with ``value`` — the case-level metrics under ``structure`` = :data:`ALL_FOREGROUND` and the
    structure-level metrics of the registry under each foreground structure's name."""
    picked = chosen(session, f)
    cases = case_table(session, f)
    whole = cases.melt(id_vars=["repeat", "case", "configuration_id"], value_vars=list(case_metrics()),
                       var_name="metric", value_name="value").assign(structure=ALL_FOREGROUND)
    rows = (select(picked.c.repeat, Image.name.label("case"), picked.c.configuration_id, StructureResult.structure)
            .join(StructureResult, and_(StructureResult.result_id == picked.c.result_id,
                                        StructureResult.class_index > 0))
            .join(Image, Image.id == picked.c.image_id))
    columns = [_frame(session, rows.add_columns(getattr(StructureResult, m.name).label("value"))).assign(metric=m.name)
               for m in _in_structure_results()]
    stored = structure_values(session, rows.add_columns(picked.c.result_id, StructureResult.class_index))
    return pd.concat([whole, *columns, stored], ignore_index=True).astype({"value": "float64"})


def summary(session: Session, f: CohortFilter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean ± SD over repeats: per configuration (the registry's case metrics) and per configuration × structure
    (the registry's structure metrics).

    The database averages each repeat's test cases (NULLs skipped, as pandas skips NaN); ``summarise_repeats`` of
    those per-repeat means gives the mean and SD over repeats. Both frames carry ``n_cases`` (distinct test cases
    per configuration) and ``n_repeats``.
    """
    picked = chosen(session, f)
    per_repeat = group_means(session, picked, ("configuration_id", "repeat"))
    if per_repeat.empty:
        return pd.DataFrame(), pd.DataFrame()
    counts = dict(session.execute(select(picked.c.configuration_id, func.count(picked.c.image_id.distinct()))
                                  .group_by(picked.c.configuration_id)).all())
    overall = summarise_repeats(per_repeat, case_metrics(), by=("configuration_id",))
    keys = ("configuration_id", "repeat", "class_index")
    structures = _frame(session, (
        select(picked.c.configuration_id, picked.c.repeat, StructureResult.class_index, StructureResult.structure,
               *(func.avg(getattr(StructureResult, m.name)).label(m.name) for m in _in_structure_results()))
        .join(StructureResult, StructureResult.result_id == picked.c.result_id)
        .group_by(picked.c.configuration_id, picked.c.repeat, StructureResult.class_index,
                  StructureResult.structure)))
    stored = group_means(session, picked, keys[:2], level="structure")
    names = registry.names(registry.structure_metrics())
    merged = structures.merge(stored, on=list(keys), how="left") if not stored.empty else structures
    per_structure = summarise_repeats(merged.reindex(columns=[*keys, "structure", *names]).astype(
        {n: "float64" for n in names}), names, by=("configuration_id", "class_index", "structure"))
    for frame in (overall, per_structure):
        frame["n_cases"] = frame["configuration_id"].map(counts)
    return overall, per_structure


def reliability(session: Session, f: CohortFilter) -> dict[int, ReliabilityBins]:
    """Pooled reliability bins per configuration: bins summed per repeat by the database, pooled over repeats."""
    picked = chosen(session, f)
    query = (
        select(picked.c.configuration_id, picked.c.repeat, ReliabilityBin.group, ReliabilityBin.bin,
               func.sum(ReliabilityBin.count).label("count"),
               func.sum(ReliabilityBin.sum_confidence).label("sum_confidence"),
               func.sum(ReliabilityBin.sum_correct).label("sum_correct"))
        .join(ReliabilityBin, ReliabilityBin.result_id == picked.c.result_id)
        .group_by(picked.c.configuration_id, picked.c.repeat, ReliabilityBin.group, ReliabilityBin.bin)
    )
    frame = _frame(session, query)
    pooled: dict[int, ReliabilityBins] = {}
    for configuration, rows in frame.groupby("configuration_id", sort=True):
        groups, bins = int(rows["group"].max()) + 1, int(rows["bin"].max()) + 1
        per_repeat = []
        for _, part in rows.groupby("repeat", sort=True):
            count = np.zeros((groups, bins), np.int64)
            confidence = np.zeros((groups, bins), np.float64)
            correct = np.zeros((groups, bins), np.int64)
            where = (part["group"].to_numpy(int), part["bin"].to_numpy(int))
            count[where] = part["count"].to_numpy(np.int64)
            confidence[where] = part["sum_confidence"].to_numpy(np.float64)
            correct[where] = np.rint(part["sum_correct"].to_numpy(np.float64)).astype(np.int64)
            per_repeat.append(ReliabilityBins(count, confidence, correct))
        pooled[int(configuration)] = pooled_bins(per_repeat)
    return pooled


def curves(session: Session, f: CohortFilter) -> pd.DataFrame:
    """Per configuration and budget: mean and SD over repeats of the per-repeat mean curves (UEO, recall, …)."""
    picked = chosen(session, f)
    query = (
        select(picked.c.configuration_id, picked.c.repeat, CurvePoint.budget_index,
               func.min(CurvePoint.budget).label("budget"),
               *(func.avg(getattr(CurvePoint, m)).label(m) for m in CURVE_METRICS))
        .join(CurvePoint, CurvePoint.result_id == picked.c.result_id)
        .group_by(picked.c.configuration_id, picked.c.repeat, CurvePoint.budget_index)
    )
    per_repeat = _frame(session, query)
    if per_repeat.empty:
        return per_repeat
    per_repeat = per_repeat.astype({m: "float64" for m in CURVE_METRICS})
    # each row is already one repeat's mean over its test cases: summarising it gives mean ± SD over repeats
    frame = summarise_repeats(per_repeat, CURVE_METRICS, by=("configuration_id", "budget_index"))
    budgets = per_repeat.groupby("budget_index")["budget"].first()
    frame["budget"] = frame["budget_index"].map(budgets)
    return frame.drop(columns=["n_cases"])

