"""A result's metrics in the store: the ``metric_values`` rows the batch writes and the frames the queries read.

One row per (result, class, metric); a case-level metric of the registry (``pipeline.metrics.registry``) has
``class_index`` :data:`~pipeline.store.schema.WHOLE_CASE`. Writers turn a case's metrics into rows with
:func:`value_rows` and insert them in bulk with :func:`insert_values`. Readers get wide frames, one float column per
case-level metric of the registry (NaN where a value is NULL), pivoted here from the long rows:
:func:`with_values` (the rows of any query that selects ``result_id``, each with its result's values) and
:func:`group_means` (the database's mean per group, NULLs skipped, as pandas skips NaN). Every list of metrics
comes from the registry at call time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import CTE, Select, Subquery, and_, func, insert, select
from sqlalchemy.orm import Session

from pipeline.metrics import registry
from pipeline.metrics.results import CaseMetrics
from pipeline.store.schema import WHOLE_CASE, MetricValue

NAME, VALUE = "metric_name", "metric_value"  # labels of the long rows (query columns may not use them)


def _number(metric: registry.Metric, metrics: CaseMetrics) -> float | None:
    value = metric.read(metrics)
    if not isinstance(value, int | float):
        raise TypeError(f"the accessor of case-level metric {metric.name!r} gave {type(value).__name__}, not a number")
    return None if math.isnan(value) else float(value)


def value_rows(metrics: CaseMetrics, has_reference: bool) -> list[dict[str, Any]]:
    """One row (``class_index``, ``name``, ``value``; the caller adds ``result_id``) per case-level metric: the
    registry accessor's value, None where it is NaN or where the metric needs a reference the case lacks."""
    return [{"class_index": WHOLE_CASE, "name": m.name,
             "value": _number(m, metrics) if has_reference or not m.needs_reference else None}
            for m in registry.case_metrics()]


def insert_values(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``metric_values`` rows (with ``result_id``) in one bulk statement."""
    if rows:
        session.execute(insert(MetricValue), list(rows))


def _names() -> list[str]:
    return list(registry.names(registry.case_metrics()))


def _pivot(long: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Long rows (``index`` columns, NAME, VALUE) → a frame indexed by ``index`` with a float column per metric."""
    names = _names()
    if long.empty:
        empty = pd.MultiIndex.from_tuples([], names=index) if len(index) > 1 else pd.Index([], name=index[0])
        return pd.DataFrame(index=empty, columns=names, dtype="float64")
    wide = long.pivot(index=index, columns=NAME, values=VALUE).reindex(columns=names).astype("float64")
    wide.columns.name = None
    return wide


def with_values(session: Session, query: Select[Any]) -> pd.DataFrame:
    """The rows of ``query`` (each with a ``result_id`` column; a result may appear in several rows), in its order,
    followed by one column per case-level metric."""
    result = session.execute(query)
    rows = pd.DataFrame(result.all(), columns=list(result.keys()))
    listed = query.subquery("listed")
    long = session.execute(
        select(MetricValue.result_id, MetricValue.name.label(NAME), MetricValue.value.label(VALUE))
        .where(MetricValue.class_index == WHOLE_CASE, MetricValue.result_id.in_(select(listed.c.result_id))))
    values = _pivot(pd.DataFrame(long.all(), columns=["result_id", NAME, VALUE]), ["result_id"])
    return rows.join(values, on="result_id")


def group_means(session: Session, selection: CTE | Subquery, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``selection``'s ``by`` columns (``selection`` has a ``result_id`` column): the mean of each
    case-level metric over the group's results, computed by the database; one row per group (none: empty)."""
    keys = [selection.c[k] for k in by]
    query = (select(*keys, MetricValue.name.label(NAME), func.avg(MetricValue.value).label(VALUE))
             .join(MetricValue, and_(MetricValue.result_id == selection.c.result_id,
                                     MetricValue.class_index == WHOLE_CASE))
             .group_by(*keys, MetricValue.name))
    result = session.execute(query)
    return _pivot(pd.DataFrame(result.all(), columns=list(result.keys())), list(by)).reset_index()


def result_values(session: Session, result_id: int) -> dict[str, float | None]:
    """The case-level metrics of one result, by name (None where NULL or missing)."""
    stored = dict(session.execute(select(MetricValue.name, MetricValue.value).where(
        MetricValue.result_id == result_id, MetricValue.class_index == WHOLE_CASE)).all())
    return {name: stored.get(name) for name in _names()}
