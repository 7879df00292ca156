"""A configuration that predicts nothing: with a reference the union ROI grows from the reference and every metric
is defined; under ``pred`` (or without a reference) the ROI is empty: DSC stays defined, every ROI metric is NaN,
never a made-up 0 or 1, and nothing is flagged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import argmax_classes, evaluate_case

SPACING = (2.0, 1.0, 1.0)
ROI_METRICS = ("ece", "brier", "nll", "ueo_auc", "fp_tp_auc", "fn_tn_auc", "mean_entropy_roi")


def _background_everywhere() -> NDArray[np.float64]:
    """(3, 6, 8, 8) probabilities whose argmax is the background everywhere, with some foreground doubt."""
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.0, 0.3, size=(3, 6, 8, 8))
    probs[0] = 1.0
    return probs / probs.sum(axis=0, keepdims=True)


def _reference() -> NDArray[np.int64]:
    labels = np.zeros((6, 8, 8), dtype=np.int64)
    labels[2:4, 3:6, 3:6] = 1
    return labels


def test_a_referenced_case_predicting_nothing_keeps_the_union_roi_from_its_reference() -> None:
    probs = _background_everywhere()
    metrics = evaluate_case(probs, _reference(), SPACING).metrics
    assert metrics.roi_voxels > 0 and metrics.error_voxels == 18
    assert metrics.dsc[1] == 0.0 and math.isnan(metrics.dsc[2])  # missed; class 2 absent from both: excluded
    assert all(math.isfinite(getattr(metrics, name)) for name in ("ece", "brier", "nll", "mean_entropy_roi"))
    assert math.isnan(metrics.fp_tp_auc)  # no voxel predicted foreground: that side is empty
    assert metrics.curve.flagged_voxels[-1] > 0


def test_roi_mode_pred_with_a_reference_grows_from_the_prediction_only() -> None:
    probs = _background_everywhere()
    probs[:, 2:4, 3:5, 3:5] = np.array([0.1, 0.8, 0.1])[:, None, None, None]
    reference = _reference()
    pred_mode = evaluate_case(probs, reference, SPACING, settings=MetricSettings(roi_mode="pred", roi_radius_mm=1.0))
    union = evaluate_case(probs, reference, SPACING, settings=MetricSettings(roi_mode="union", roi_radius_mm=1.0))
    assert 0 < pred_mode.metrics.roi_voxels < union.metrics.roi_voxels
    np.testing.assert_array_equal(pred_mode.metrics.dsc, union.metrics.dsc)  # on the whole volume whatever the ROI
    assert pred_mode.metrics.dsc[1] == pytest.approx(2 * 8 / (8 + 18))


@pytest.mark.parametrize("with_reference", [True, False])
def test_roi_mode_pred_predicting_nothing_is_an_empty_roi_with_undefined_roi_metrics(with_reference: bool) -> None:
    probs = _background_everywhere()
    reference = _reference() if with_reference else argmax_classes(probs).astype(np.int64)
    settings = MetricSettings(roi_mode="pred")
    result = evaluate_case(probs, reference, SPACING, settings=settings, maps_budget=0.02)
    metrics = result.metrics
    assert metrics.roi_voxels == 0 and metrics.error_voxels == 0
    assert all(math.isnan(getattr(metrics, name)) for name in ROI_METRICS)
    assert all(math.isnan(v) for v in metrics.ece_structure + metrics.ueo_auc_structure)
    assert np.isnan(metrics.curve.ueo).all() and np.isnan(metrics.curve.recall).all()
    assert (metrics.curve.flagged_ml == 0).all() and metrics.reliability.count.sum() == 0
    assert metrics.dsc[1] == 0.0 if with_reference else math.isnan(metrics.dsc[1])
    assert result.maps is not None and not result.maps.budget_mask.any()
    assert (result.maps.prediction == 0).all() and result.maps.entropy.max() > 0
    assert result.maps.error.sum() == (18 if with_reference else 0)
    listed = metrics.to_dict()
    assert listed["ece"] is None and listed["brier"] is None and listed["mean_entropy_roi"] is None


def test_without_a_reference_the_union_rule_is_the_pred_rule() -> None:
    """The batch passes the prediction as the reference of an unreferenced case: its union ROI is the predicted
    foreground's, the spec's prospective rule, the same ROI as ``pred``."""
    probs = _background_everywhere()
    probs[:, 1:3, 2:4, 2:6] = np.array([0.2, 0.1, 0.7])[:, None, None, None]
    stand_in = argmax_classes(probs)
    union = evaluate_case(probs, stand_in, SPACING).metrics
    pred = evaluate_case(probs, stand_in, SPACING, settings=MetricSettings(roi_mode="pred")).metrics
    assert union.roi_voxels == pred.roi_voxels > 0 and union.mean_entropy_roi == pred.mean_entropy_roi
