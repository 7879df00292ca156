"""A result's metrics in the store: the ``metric_values`` rows the batch writes and the frames the queries read.

One row per (result, class, metric); a case-level metric of the registry (``pipeline.metrics.registry``) has
``class_index`` :data:`~pipeline.store.schema.WHOLE_CASE`, a structure-level one kept here (the registry's ``table``)
one row per foreground class c >= 1 with ``class_index`` c. Writers turn a case's metrics into rows with
:func:`value_rows` and insert them in bulk with :func:`insert_values`. Readers get wide frames, one float column per
metric of a level (NaN where a value is NULL), pivoted here from the long rows: :func:`with_values` (the rows of any
query that selects ``result_id``, each with its result's case-level values), :func:`group_means` (the database's
mean per group, and per class for the structure level; NULLs skipped, as pandas skips NaN) and, long,
:func:`structure_values`. Every list of metrics comes from the registry at call time.
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


def _stored(level: registry.Level) -> tuple[registry.Metric, ...]:
    """The metrics of ``level`` that this table keeps, in registry order."""
    chosen = registry.case_metrics() if level == "case" else registry.structure_metrics()
    return tuple(m for m in chosen if m.table == "metric_values")


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _per_class(metric: registry.Metric, metrics: CaseMetrics) -> dict[int, float | None]:
    """The value of ``metric`` per class index: WHOLE_CASE for a case-level metric, 1..C-1 for a structure-level one."""
    value = metric.read(metrics)
    if metric.level == "case":
        if not isinstance(value, int | float):
            raise TypeError(f"the accessor of case-level metric {metric.name!r} gave {type(value).__name__}, "
                            "not a number")
        return {WHOLE_CASE: _number(value)}
    if isinstance(value, int | float):
        raise TypeError(f"the accessor of structure-level metric {metric.name!r} gave a number, not one per class")
    return {c: _number(v) for c, v in enumerate(value) if c > 0}


def value_rows(metrics: CaseMetrics, has_reference: bool) -> list[dict[str, Any]]:
    """One row (``class_index``, ``name``, ``value``; the caller adds ``result_id``) per case-level metric and per
    (foreground class, structure-level metric kept here): the registry accessor's value, None where it is NaN or
    where the metric needs a reference the case lacks."""
    return [{"class_index": c, "name": m.name, "value": v if has_reference or not m.needs_reference else None}
            for m in (*_stored("case"), *_stored("structure")) for c, v in _per_class(m, metrics).items()]


def insert_values(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``metric_values`` rows (with ``result_id``) in one bulk statement."""
    if rows:
        session.execute(insert(MetricValue), list(rows))


def _names(level: registry.Level = "case") -> list[str]:
    return list(registry.names(_stored(level)))


def _pivot(long: pd.DataFrame, index: list[str], level: registry.Level = "case") -> pd.DataFrame:
    """Long rows (``index`` columns, NAME, VALUE) → a frame indexed by ``index`` with a float column per metric of
    ``level``."""
    names = _names(level)
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


def group_means(session: Session, selection: CTE | Subquery, by: Sequence[str],
                level: registry.Level = "case") -> pd.DataFrame:
    """Per group of ``selection``'s ``by`` columns (``selection`` has a ``result_id`` column): the mean of each
    metric of ``level`` kept here over the group's results, computed by the database; one row per group (none:
    empty). The structure level groups by ``class_index`` too (foreground classes)."""
    keys = [selection.c[k] for k in by]
    if level == "case":
        own = MetricValue.class_index == WHOLE_CASE
    else:
        keys.append(MetricValue.class_index)
        own = and_(MetricValue.class_index > 0, MetricValue.name.in_(_names(level)))
    query = (select(*keys, MetricValue.name.label(NAME), func.avg(MetricValue.value).label(VALUE))
             .join(MetricValue, and_(MetricValue.result_id == selection.c.result_id, own))
             .group_by(*keys, MetricValue.name))
    result = session.execute(query)
    index = [k.name for k in keys]
    return _pivot(pd.DataFrame(result.all(), columns=list(result.keys())), index, level).reset_index()


def structure_values(session: Session, query: Select[Any]) -> pd.DataFrame:
    """The rows of ``query`` (with ``result_id`` and ``class_index`` columns, dropped from the frame), each
    repeated once per structure-level metric kept here with its ``metric`` name and ``value`` (NaN where NULL)."""
    listed = query.subquery("listed")
    shown = [c for c in listed.c if c.name not in ("result_id", "class_index")]
    result = session.execute(
        select(*shown, MetricValue.name.label("metric"), MetricValue.value.label("value"))
        .join(MetricValue, and_(MetricValue.result_id == listed.c.result_id,
                                MetricValue.class_index == listed.c.class_index))
        .where(MetricValue.name.in_(_names("structure"))))
    return pd.DataFrame(result.all(), columns=list(result.keys())).astype({"value": "float64"})


def result_values(session: Session, result_id: int) -> dict[str, float | None]:
    """The case-level metrics of one result, by name (None where NULL or missing)."""
    stored = dict(session.execute(select(MetricValue.name, MetricValue.value).where(
        MetricValue.result_id == result_id, MetricValue.class_index == WHOLE_CASE)).all())
    return {name: stored.get(name) for name in _names()}
