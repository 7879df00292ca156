"""The cohort calibration table: configuration × structure rows, the best value of each column, CSV export.

Its metric columns are the registry's (``pipeline.metrics.registry``), read at call time, in the order of the
case-level metrics: a case-level metric that a structure-level metric names as ``whole_case`` gives its column to
that structure-level metric (DSC per structure, whose "all foreground" row shows the mean foreground DSC); the other
case-level metrics keep theirs, "—" on structure rows; structure-level metrics without a ``whole_case`` come last.
Headers, formats and tooltips come from the registry too (each header links to its metric's section of the
metrics document, :func:`qa_dashboard.components.metric_header`); an undefined value reads "—".
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.metrics import registry
from pipeline.metrics.statistics import StatisticsSettings
from pipeline.store.cohort_numbers import ALL_FOREGROUND, CohortFilter, case_values, configurations, summary
from qa_dashboard.cell_statistics import CellStatistics, Key, cell_statistics
from qa_dashboard.components import metric_header
from qa_dashboard.config import settings
from qa_dashboard.queries.cohort import protocol
from qa_dashboard.store import Store


def table_metrics() -> list[registry.Metric]:
    """The table's metric columns, in order (see the module's description)."""
    structures = registry.structure_metrics()
    folding = {m.whole_case: m for m in structures if m.whole_case}
    return [*(folding.get(m.name, m) for m in registry.case_metrics()), *(m for m in structures if not m.whole_case)]


def _value(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _whole_case_row(record: dict[str, Any], metrics: list[registry.Metric]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric in metrics:
        source = metric.whole_case if metric.level == "structure" else metric.name
        row[metric.name] = _value(record.get(f"{source}_mean")) if source else None
        row[f"{metric.name}_sd"] = _value(record.get(f"{source}_sd")) if source else None
    return row


def _structure_row(record: dict[str, Any], metrics: list[registry.Metric]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric in metrics:
        shown = metric.level == "structure"
        row[metric.name] = _value(record.get(f"{metric.name}_mean")) if shown else None
        row[f"{metric.name}_sd"] = _value(record.get(f"{metric.name}_sd")) if shown else None
    return row


def cohort_rows(overall: pd.DataFrame, per_structure: pd.DataFrame, names: dict[int, str],
                structures: list[str], stats: dict[Key, CellStatistics] | None = None) -> list[dict[str, Any]]:
    """Grid rows for the chosen ``structures`` (``ALL_FOREGROUND`` and/or structure names), in grid order.

    Each metric m gives ``m`` (mean over repeats) and ``m_sd``; with ``stats`` (:mod:`qa_dashboard.cell_statistics`)
    also ``m_low``/``m_high`` (case-level bootstrap CI), ``m_n`` (cases), ``m_mark`` (``best``, ``tied`` or "") and
    ``m_best`` (the mark is ``best``: the best mean, separated from every other configuration of its structure by a
    paired CI excluding 0 and a multiplicity-adjusted p). Structure rows carry the structure-level metrics only; a
    case-level column without a structure-level counterpart is None there ("—" in the grid).
    """
    metrics = table_metrics()
    rows: list[dict[str, Any]] = []
    order = {c: i for i, c in enumerate(names)}
    if ALL_FOREGROUND in structures and not overall.empty:
        for record in overall.to_dict("records"):
            configuration = int(record["configuration_id"])
            rows.append({"configuration": names[configuration], "structure": ALL_FOREGROUND,
                         **_whole_case_row(record, metrics), "n_cases": int(record["n_cases"]),
                         "n_repeats": int(record["n_repeats"]), "_order": (0, order[configuration]),
                         **_statistics(stats, configuration, ALL_FOREGROUND, metrics)})
    if not per_structure.empty:
        for record in per_structure.to_dict("records"):
            if record["structure"] not in structures:
                continue
            configuration = int(record["configuration_id"])
            rows.append({"configuration": names[configuration], "structure": record["structure"],
                         **_structure_row(record, metrics), "n_cases": int(record["n_cases"]),
                         "n_repeats": int(record["n_repeats"]),
                         "_order": (1 + int(record["class_index"]), order[configuration]),
                         **_statistics(stats, configuration, record["structure"], metrics)})
    rows.sort(key=lambda r: r.pop("_order"))
    return rows


def _statistics(stats: dict[Key, CellStatistics] | None, configuration: int, structure: str,
                metrics: list[registry.Metric]) -> dict[str, Any]:
    """A row's CI, n, mark and comparison with its column's top configuration, per metric (empty without stats)."""
    found: dict[str, Any] = {}
    for metric in metrics:
        cell = (stats or {}).get((configuration, structure, metric.name))
        name = metric.name
        found[f"{name}_mark"] = cell.mark if cell else ""
        found[f"{name}_best"] = bool(cell and cell.mark == "best")
        found[f"{name}_low"] = _value(cell.low) if cell else None
        found[f"{name}_high"] = _value(cell.high) if cell else None
        found[f"{name}_n"] = cell.n if cell else None
        versus = cell.versus_top if cell else None
        found[f"{name}_versus"] = [_value(v) for v in versus] if versus else None
    return found


def _tooltip(metric: registry.Metric) -> str:
    whole = (f" The {ALL_FOREGROUND} row shows {registry.metric(metric.whole_case).label}."
             if metric.whole_case else "")
    return (f"{metric.describe()}{whole} Mean ± SD over repeats; hover a cell for its 95 % CI (case-level bootstrap) "
            f"and n. ★ best: separated from every other configuration (paired CI excludes 0, Holm-adjusted p < 0.05); "
            f"≈ tied for best.")


def _cell_tooltip(name: str, digits: int) -> str:
    """The cell's tooltip (JavaScript): mean ± SD, the CI and n, and the comparison with the column's top."""
    def fixed(value: str) -> str:
        return f"({value} == null ? '—' : {value}.toFixed({digits}))"

    return (f"params.value == null ? '' : 'mean ' + {fixed('params.value')} + ' ± ' + {fixed(f'params.data.{name}_sd')}"
            f" + ' (SD over repeats); 95 % CI [' + {fixed(f'params.data.{name}_low')} + ', ' + "
            f"{fixed(f'params.data.{name}_high')} + '], n = ' + params.data.{name}_n + ' cases' + "
            f"(params.data.{name}_versus ? '; vs the best: difference CI [' + "
            f"{fixed(f'params.data.{name}_versus[0]')} + ', ' + {fixed(f'params.data.{name}_versus[1]')} + "
            f"'], adjusted p = ' + (params.data.{name}_versus[2] == null ? '—' : "
            f"params.data.{name}_versus[2].toPrecision(2)) : '')")


def column_defs() -> list[dict[str, Any]]:
    """ag-grid columns: mean ± SD shown, sorted by the mean, the best value starred and shaded."""
    columns: list[dict[str, Any]] = [
        {"field": "configuration", "headerName": "Configuration", "pinned": "left", "minWidth": 130},
        {"field": "structure", "headerName": "Structure", "minWidth": 120},
    ]
    for metric in table_metrics():
        name, digits = metric.name, metric.digits
        columns.append({
            "field": name, "type": "numericColumn", **metric_header(metric, _tooltip(metric)),
            "valueFormatter": {"function": (
                f"params.value == null ? '—' : ({{best: '★ ', tied: '≈ '}}[params.data.{name}_mark] || '') + "
                f"params.value.toFixed({digits})"
                f" + (params.data.{name}_sd == null ? '' : ' ± ' + params.data.{name}_sd.toFixed({digits}))")},
            "tooltipValueGetter": {"function": _cell_tooltip(name, digits)},
            "cellClassRules": {"qa-best": f"params.data.{name}_best === true",
                               "qa-tied": f"params.data.{name}_mark === 'tied'"},
        })
    columns += [{"field": "n_cases", "headerName": "n cases", "type": "numericColumn"},
                {"field": "n_repeats", "headerName": "repeats", "type": "numericColumn"}]
    return columns


def cohort_csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV: per metric the mean and SD over repeats, the case-level 95 % CI, n and the mark (best, tied
    or empty); n cases and repeats."""
    names = [m.name for m in table_metrics()]
    columns = ["configuration", "structure"]
    for name in names:
        columns += [f"{name}_mean", f"{name}_sd", f"{name}_low", f"{name}_high", f"{name}_n", f"{name}_mark"]
    columns += ["n_cases", "n_repeats"]
    records = [{**{f"{m}_mean": r.get(m) for m in names}, **r} for r in rows]
    return pd.DataFrame.from_records(records, columns=columns).to_csv(index=False, float_format="%.6g")


def load_rows(store: Store, chosen: CohortFilter, structures: list[str]) -> list[dict[str, Any]]:
    """The table's rows of a protocol filter and structures, with each cell's statistics (the page's grid and its
    CSV export)."""
    with store.session() as session:
        info = protocol(session, chosen.protocol_id)
        names = dict(configurations(session, info.model_set_id))
        overall, per_structure = store.cached(session, ("summary", chosen), lambda: summary(session, chosen),
                                                 by_acquisition=chosen.acquisition is not None)
        statistics = StatisticsSettings(correction=settings().multiple_comparisons)
        stats = store.cached(session, ("cell-statistics", chosen, statistics), lambda: cell_statistics(
            case_values(session, chosen), table_metrics(), statistics), by_acquisition=chosen.acquisition is not None)
    return cohort_rows(overall, per_structure, names, structures, stats)
