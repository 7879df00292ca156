"""The cohort page's table "By acquisition": one row per (configuration, acquisition group) of
:func:`pipeline.store.cohort_strata.stratified`, with n per group, the registry's summary metrics and the group's
ECE against the rest (⚑ where the case-bootstrap CI of the difference excludes 0)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pipeline.metrics import registry
from qa_dashboard.components import metric_header


def _value(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def strata_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Grid rows of the stratified frame (numbers as floats, NaN as None)."""
    metrics = registry.names(registry.summary_metrics())
    return [{"configuration": r["configuration"], "group": r["group"], "n_cases": int(r["n_cases"]),
             **{m: _value(r[m]) for m in metrics},
             **{k: _value(r[k]) for k in ("ece_difference", "ece_low", "ece_high")}, "differs": bool(r["differs"])}
            for r in frame.to_dict("records")]


def strata_columns() -> list[dict[str, Any]]:
    """ag-grid columns: configuration, group, n, the summary metrics (mean over the group's cases), ΔECE with its CI."""
    digits = registry.metric("ece").digits
    fixed = f"toFixed({digits})"
    columns: list[dict[str, Any]] = [
        {"field": "configuration", "headerName": "Configuration", "pinned": "left", "minWidth": 130},
        {"field": "group", "headerName": "Group", "minWidth": 160},
        {"field": "n_cases", "headerName": "n cases", "type": "numericColumn"},
    ]
    for metric in registry.summary_metrics():
        columns.append({"field": metric.name, "type": "numericColumn",
                        **metric_header(metric, f"{metric.describe()} Mean over the group's test cases (each case's "
                                                f"mean over the repeats it was tested in)."),
                        "valueFormatter": {"function": f"params.value == null ? '—' : "
                                                       f"params.value.toFixed({metric.digits})"}})
    columns.append({
        "field": "ece_difference", "headerName": "ΔECE vs rest [95 % CI]", "type": "numericColumn", "minWidth": 190,
        "headerTooltip": "the group's mean ROI ECE minus the other cases' mean; 95 % CI: cases resampled within the "
                         "group and within the rest; ⚑ the CI excludes 0 (groups of one case are never flagged)",
        "valueFormatter": {"function": (
            f"params.value == null ? '—' : (params.data.differs ? '⚑ ' : '') + params.value.{fixed} + ' [' + "
            f"(params.data.ece_low == null ? '—' : params.data.ece_low.{fixed}) + ', ' + "
            f"(params.data.ece_high == null ? '—' : params.data.ece_high.{fixed}) + ']'")},
        "cellClassRules": {"qa-flagged": "params.data.differs === true"},
    })
    return columns
