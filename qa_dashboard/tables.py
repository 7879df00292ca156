"""The cohort calibration table: configuration × structure rows, the best value of each column, CSV export."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

ALL_FOREGROUND = "all foreground"
# (column, header, higher is better); DSC of the "all foreground" rows is the case's mean foreground DSC
METRICS = (("dsc", "DSC", True), ("ece", "ECE (ROI)", False), ("brier", "Brier (ROI)", False), ("nll", "NLL", False),
           ("ueo_auc", "UEO-AUC", True), ("fp_tp_auc", "FP-TP AUC", True), ("fn_tn_auc", "FN-TN AUC", True))
CASE_LEVEL = tuple(m for m, _, _ in METRICS if m != "dsc")


def _value(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def cohort_rows(overall: pd.DataFrame, per_structure: pd.DataFrame, names: dict[int, str],
                structures: list[str]) -> list[dict[str, Any]]:
    """Grid rows for the chosen ``structures`` (``ALL_FOREGROUND`` and/or structure names), in grid order.

    Each metric m gives ``m`` (mean over repeats), ``m_sd`` and ``m_best`` (the best mean among rows of the same
    structure). Structure rows carry DSC only: the calibration and review metrics are per case, on the ROI.
    """
    rows: list[dict[str, Any]] = []
    order = {c: i for i, c in enumerate(names)}
    if ALL_FOREGROUND in structures and not overall.empty:
        for record in overall.to_dict("records"):
            row = {"configuration": names[int(record["configuration_id"])], "structure": ALL_FOREGROUND,
                   "dsc": _value(record["dsc_mean_fg_mean"]), "dsc_sd": _value(record["dsc_mean_fg_sd"]),
                   "n_cases": int(record["n_cases"]), "n_repeats": int(record["n_repeats"]),
                   "_order": (0, order[int(record["configuration_id"])])}
            for metric in CASE_LEVEL:
                row[metric], row[f"{metric}_sd"] = _value(record[f"{metric}_mean"]), _value(record[f"{metric}_sd"])
            rows.append(row)
    if not per_structure.empty:
        for record in per_structure.to_dict("records"):
            if record["structure"] not in structures:
                continue
            rows.append({"configuration": names[int(record["configuration_id"])], "structure": record["structure"],
                         "dsc": _value(record["dsc_mean"]), "dsc_sd": _value(record["dsc_sd"]),
                         "n_cases": int(record["n_cases"]), "n_repeats": int(record["n_repeats"]),
                         "_order": (1 + int(record["class_index"]), order[int(record["configuration_id"])]),
                         **{m: None for m in CASE_LEVEL}})
    rows.sort(key=lambda r: r.pop("_order"))
    _mark_best(rows)
    return rows


def _mark_best(rows: list[dict[str, Any]]) -> None:
    for metric, _, higher in METRICS:
        for structure in {r["structure"] for r in rows}:
            values = [r[metric] for r in rows if r["structure"] == structure and r[metric] is not None]
            best = (max if higher else min)(values) if values else None
            for row in rows:
                if row["structure"] == structure:
                    row[f"{metric}_best"] = best is not None and row[metric] == best


def column_defs() -> list[dict[str, Any]]:
    """ag-grid columns: mean ± SD shown, sorted by the mean, the best value starred and shaded."""
    columns: list[dict[str, Any]] = [
        {"field": "configuration", "headerName": "Configuration", "pinned": "left"},
        {"field": "structure", "headerName": "Structure"},
    ]
    for metric, header, higher in METRICS:
        columns.append({
            "field": metric, "headerName": header, "type": "numericColumn",
            "headerTooltip": f"mean ± SD over repeats; {'higher' if higher else 'lower'} is better",
            "valueFormatter": {"function": (
                f"params.value == null ? '' : (params.data.{metric}_best ? '★ ' : '') + params.value.toFixed(3)"
                f" + (params.data.{metric}_sd == null ? '' : ' ± ' + params.data.{metric}_sd.toFixed(3))")},
            "cellClassRules": {"qa-best": f"params.data.{metric}_best === true"},
        })
    columns += [{"field": "n_cases", "headerName": "n cases", "type": "numericColumn"},
                {"field": "n_repeats", "headerName": "repeats", "type": "numericColumn"}]
    return columns


def cohort_csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV: mean and SD columns per metric, whether it is the best, n cases and repeats."""
    columns = ["configuration", "structure"]
    for metric, _, _ in METRICS:
        columns += [f"{metric}_mean", f"{metric}_sd", f"{metric}_best"]
    columns += ["n_cases", "n_repeats"]
    records = [{**{f"{m}_mean": r[m] for m, _, _ in METRICS}, **r} for r in rows]
    return pd.DataFrame.from_records(records, columns=columns).to_csv(index=False, float_format="%.6g")
