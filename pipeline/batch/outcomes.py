"""Pure work of one case: the metric suite per configuration, and the rows the store keeps of it.

Without a reference (prospective use) the ROI grows from the predicted foreground only (spec) and the metrics that
need a reference are None; the entropy, prediction and top-budget maps are still made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.results import CaseMetrics, CaseResult
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import argmax_classes, evaluate_case
from pipeline.store import metric_values


@dataclass(frozen=True)
class Outcome:
    """One configuration of one case: its metrics and maps, whether a reference backed them, the cost."""

    configuration: str
    temperature: float | None
    result: CaseResult
    has_reference: bool
    seconds: float


def evaluate_configuration(
    probabilities: NDArray[np.float32],
    labels: NDArray[np.uint8] | None,
    spacing: tuple[float, float, float],
    settings: MetricSettings,
    temperature: float | None,
    budget: float,
) -> CaseResult:
    """The metric suite with voxel maps; without ``labels`` the prediction stands in as the reference.

    With the prediction as reference the union ROI is the predicted foreground's (the spec's prospective ROI), the
    error set is empty, and the caller must drop the reference metrics (:func:`result_row` and :func:`value_rows` do).
    """
    reference = labels if labels is not None else argmax_classes(probabilities)
    return evaluate_case(probabilities, reference, spacing, settings, temperature, maps_budget=budget)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def result_row(outcome: Outcome) -> dict[str, Any]:
    """The ``case_results`` columns of an outcome (ids excluded); its metrics are :func:`value_rows`."""
    metrics: CaseMetrics = outcome.result.metrics
    return {
        "temperature": outcome.temperature,
        "has_reference": outcome.has_reference,
        "roi_voxels": metrics.roi_voxels,
        "error_voxels": metrics.error_voxels if outcome.has_reference else None,
        "voxel_ml": metrics.voxel_ml,
        "seconds": outcome.seconds,
    }


def value_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """The ``metric_values`` rows of an outcome (result id excluded): every case-level metric of the registry, the
    ones that need a reference None without one."""
    return metric_values.value_rows(outcome.result.metrics, outcome.has_reference)


def structure_rows(outcome: Outcome, labels: tuple[str, ...], reference_counts: NDArray[np.int64] | None
                   ) -> list[dict[str, Any]]:
    """``structure_results`` rows: DSC per class (None without reference) and volumes in mL."""
    maps = outcome.result.maps
    assert maps is not None
    predicted = np.bincount(maps.prediction.ravel(), minlength=len(labels))
    voxel_ml = outcome.result.metrics.voxel_ml
    return [
        {
            "class_index": index,
            "structure": name,
            "dsc": _number(outcome.result.metrics.dsc[index]) if outcome.has_reference else None,
            "predicted_ml": float(predicted[index] * voxel_ml),
            "reference_ml": float(reference_counts[index] * voxel_ml) if reference_counts is not None else None,
        }
        for index, name in enumerate(labels)
    ]


def curve_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """``curve_points`` rows over the budget grid (UEO, recall, precision None without reference)."""
    curve = outcome.result.metrics.curve
    rows = []
    for index, budget in enumerate(curve.budgets.tolist()):
        rows.append({
            "budget_index": index,
            "budget": float(budget),
            "ueo": _number(curve.ueo[index]) if outcome.has_reference else None,
            "recall": _number(curve.recall[index]) if outcome.has_reference else None,
            "precision": _number(curve.precision[index]) if outcome.has_reference else None,
            "flagged_ml": float(curve.flagged_ml[index]),
        })
    return rows


def bin_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """``reliability_bins`` rows (empty without a reference: confidence against itself says nothing)."""
    if not outcome.has_reference:
        return []
    bins = outcome.result.metrics.reliability
    groups, per_group = bins.count.shape
    return [
        {"group": g, "bin": m, "count": int(bins.count[g, m]), "sum_confidence": float(bins.sum_confidence[g, m]),
         "sum_correct": float(bins.sum_correct[g, m])}
        for g in range(groups)
        for m in range(per_group)
    ]
