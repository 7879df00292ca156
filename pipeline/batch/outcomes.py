"""Pure work of one case: the metric suite per configuration, and the rows the store keeps of it.

Without a reference (prospective use) the ROI grows from the predicted foreground only (spec) and the metrics that
need a reference are None; the entropy, prediction and top-budget maps are still made. A configuration that predicts
no foreground is a result like any other, flagged ``empty_prediction`` (review every structure whole): with a
reference its union ROI grows from the reference; without one the ROI is empty, so the ROI metrics are None (never
0 or 1) and nothing is flagged at any budget. Each foreground structure with no predicted voxel is flagged too
(:func:`empty_structures`). Every result carries its scan's mean entropy over the body
(:func:`pipeline.metrics.shift.region_mean_entropy`), the out-of-distribution score's value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.results import CaseMetrics, CaseResult
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.shift import region_mean_entropy
from pipeline.metrics.suite import argmax_classes, evaluate_case
from pipeline.store import metric_values


@dataclass(frozen=True)
class Outcome:
    """One configuration of one case: its metrics and maps, whether a reference backed them, the cost, and its mean
    entropy over the scan's body (None when the body region holds no voxel)."""

    configuration: str
    temperature: float | None
    result: CaseResult
    has_reference: bool
    seconds: float
    ood_entropy: float | None


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


def body_entropy(result: CaseResult, body: NDArray[np.bool_]) -> float | None:
    """The result's mean entropy over the scan's ``body`` (Z, Y, X) region: the value its out-of-distribution score
    ranks."""
    assert result.maps is not None
    return region_mean_entropy(result.maps.entropy, body)


def empty_structures(predicted: NDArray[np.int64], reference: NDArray[np.int64] | None) -> NDArray[np.bool_]:
    """Per class (shape (C,), from voxel counts per class): a foreground structure with no predicted voxel that the
    reference holds, or, without a reference, any foreground structure with no predicted voxel — the reviewer must
    review it whole. The background is never flagged."""
    flagged = predicted == 0
    if reference is not None:
        flagged &= reference > 0
    flagged[0] = False
    return flagged


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
        "empty_prediction": outcome.result.maps is not None and not outcome.result.maps.prediction.any(),
        "ood_entropy": outcome.ood_entropy,
    }


def value_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """The ``metric_values`` rows of an outcome (result id excluded): every case-level metric of the registry, the
    ones that need a reference None without one."""
    return metric_values.value_rows(outcome.result.metrics, outcome.has_reference)


def structure_rows(outcome: Outcome, labels: tuple[str, ...], reference_counts: NDArray[np.int64] | None
                   ) -> list[dict[str, Any]]:
    """``structure_results`` rows: DSC per class (None without reference), volumes in mL, the empty-prediction
    flag (:func:`empty_structures`)."""
    maps = outcome.result.maps
    assert maps is not None
    predicted = np.bincount(maps.prediction.ravel(), minlength=len(labels))
    empty = empty_structures(predicted, reference_counts)
    voxel_ml = outcome.result.metrics.voxel_ml
    return [
        {
            "class_index": index,
            "structure": name,
            "dsc": _number(outcome.result.metrics.dsc[index]) if outcome.has_reference else None,
            "predicted_ml": float(predicted[index] * voxel_ml),
            "reference_ml": float(reference_counts[index] * voxel_ml) if reference_counts is not None else None,
            "empty_prediction": bool(empty[index]),
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
