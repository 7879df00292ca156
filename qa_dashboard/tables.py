"""The cohort calibration table: configuration × structure rows, the best value of each column, CSV export.

Its metric columns are the registry's (``pipeline.metrics.registry``), read at call time: each structure-level
metric (DSC), whose "all foreground" row shows the case-level metric it names as ``whole_case`` (the mean foreground
DSC), then every other case-level metric. Headers, formats and tooltips come from the registry too.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.metrics import registry
from qa_dashboard.queries.cohort import CohortFilter, configurations, protocol, summary
from qa_dashboard.store import Store

ALL_FOREGROUND = "all foreground"


def table_metrics() -> list[registry.Metric]:
    """The table's metric columns, in order (see the module's description)."""
    structures = registry.structure_metrics()
    folded = {m.whole_case for m in structures}
    return [*structures, *(m for m in registry.case_metrics() if m.name not in folded)]


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
                structures: list[str]) -> list[dict[str, Any]]:
    """Grid rows for the chosen ``structures`` (``ALL_FOREGROUND`` and/or structure names), in grid order.

    Each metric m gives ``m`` (mean over repeats), ``m_sd`` and ``m_best`` (the best mean among rows of the same
    structure; False for a metric without a better direction). Structure rows carry the structure-level metrics
    only: the calibration and review metrics are per case, on the ROI.
    """
    metrics = table_metrics()
    rows: list[dict[str, Any]] = []
    order = {c: i for i, c in enumerate(names)}
    if ALL_FOREGROUND in structures and not overall.empty:
        for record in overall.to_dict("records"):
            configuration = int(record["configuration_id"])
            rows.append({"configuration": names[configuration], "structure": ALL_FOREGROUND,
                         **_whole_case_row(record, metrics), "n_cases": int(record["n_cases"]),
                         "n_repeats": int(record["n_repeats"]), "_order": (0, order[configuration])})
    if not per_structure.empty:
        for record in per_structure.to_dict("records"):
            if record["structure"] not in structures:
                continue
            configuration = int(record["configuration_id"])
            rows.append({"configuration": names[configuration], "structure": record["structure"],
                         **_structure_row(record, metrics), "n_cases": int(record["n_cases"]),
                         "n_repeats": int(record["n_repeats"]),
                         "_order": (1 + int(record["class_index"]), order[configuration])})
    rows.sort(key=lambda r: r.pop("_order"))
    _mark_best(rows, metrics)
    return rows


def _mark_best(rows: list[dict[str, Any]], metrics: list[registry.Metric]) -> None:
    for metric in metrics:
        for structure in {r["structure"] for r in rows}:
            values = [r[metric.name] for r in rows if r["structure"] == structure and r[metric.name] is not None]
            pick = {"higher": max, "lower": min}.get(metric.direction or "")
            best = pick(values) if pick is not None and values else None
            for row in rows:
                if row["structure"] == structure:
                    row[f"{metric.name}_best"] = best is not None and row[metric.name] == best


def _tooltip(metric: registry.Metric) -> str:
    whole = (f" The {ALL_FOREGROUND} row shows {registry.metric(metric.whole_case).label}."
             if metric.whole_case else "")
    return f"{metric.describe()}{whole} Mean ± SD over repeats. See {metric.anchor}."


def column_defs() -> list[dict[str, Any]]:
    """ag-grid columns: mean ± SD shown, sorted by the mean, the best value starred and shaded."""
    columns: list[dict[str, Any]] = [
        {"field": "configuration", "headerName": "Configuration", "pinned": "left"},
        {"field": "structure", "headerName": "Structure"},
    ]
    for metric in table_metrics():
        name, digits = metric.name, metric.digits
        columns.append({
            "field": name, "headerName": metric.label, "type": "numericColumn", "headerTooltip": _tooltip(metric),
            "valueFormatter": {"function": (
                f"params.value == null ? '' : (params.data.{name}_best ? '★ ' : '') + params.value.toFixed({digits})"
                f" + (params.data.{name}_sd == null ? '' : ' ± ' + params.data.{name}_sd.toFixed({digits}))")},
            "cellClassRules": {"qa-best": f"params.data.{name}_best === true"},
        })
    columns += [{"field": "n_cases", "headerName": "n cases", "type": "numericColumn"},
                {"field": "n_repeats", "headerName": "repeats", "type": "numericColumn"}]
    return columns


def cohort_csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV: mean and SD columns per metric, whether it is the best, n cases and repeats."""
    names = [m.name for m in table_metrics()]
    columns = ["configuration", "structure"]
    for name in names:
        columns += [f"{name}_mean", f"{name}_sd", f"{name}_best"]
    columns += ["n_cases", "n_repeats"]
    records = [{**{f"{m}_mean": r.get(m) for m in names}, **r} for r in rows]
    return pd.DataFrame.from_records(records, columns=columns).to_csv(index=False, float_format="%.6g")


def load_rows(store: Store, chosen: CohortFilter, structures: list[str]) -> list[dict[str, Any]]:
    """The table's rows of a protocol filter and structures (the page's grid and its CSV export)."""
    with store.session() as session:
        info = protocol(session, chosen.protocol_id)
        names = dict(configurations(session, info.model_set_id))
        overall, per_structure = store.cached(session, ("summary", chosen), lambda: summary(session, chosen))
    return cohort_rows(overall, per_structure, names, structures)
