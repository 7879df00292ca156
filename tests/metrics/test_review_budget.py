"""The review budget's one owner: rounding, ties and U_b agree wherever they are used (the metric suite's mask, the
worklist's mask and narrowing, the ROI rule on label maps)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics.pooling import softmax
from pipeline.metrics.review_budget import (
    DEFAULT_CAP,
    DEFAULT_FRACTION,
    Budget,
    descending_order,
    flagged_count,
    narrow_budget_mask,
    top_budget_mask,
)
from pipeline.metrics.roi import roi_of
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import argmax_classes, evaluate_case

SPACING = (2.5, 1.0, 1.0)


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((10, 40, 40), dtype=np.uint8)
    labels[3:7, 10:22, 12:26] = 2
    labels[5:8, 28:32, 5:9] = 1
    logits = rng.normal(0.0, 1.0, size=(3, *labels.shape)).astype(np.float32)
    for c in range(3):
        logits[c] += 3.0 * (np.roll(labels, seed % 3, axis=2) == c)
    return softmax(logits), labels


def test_exact_decimal_rounding() -> None:
    assert 0.07 * 100 > 7  # binary floating point would flag 8 voxels
    assert flagged_count(0.07, 100) == 7 and flagged_count(0.02, 50) == 1 and flagged_count(0.0201, 50) == 2
    assert flagged_count(1.0, 9) == 9 and flagged_count(0.0, 9) == 0
    assert (0.02, MetricSettings().budget_max) == (DEFAULT_FRACTION, DEFAULT_CAP)


def test_ties_are_broken_in_raster_order() -> None:
    entropy = np.array([0.5, 0.9, 0.5, 0.9, 0.1], dtype=np.float32)
    assert descending_order(entropy).tolist() == [1, 3, 0, 2, 4]
    assert descending_order(entropy.astype(np.float16)).tolist() == [1, 3, 0, 2, 4]
    volume = np.array([[[0.5, 0.9], [0.5, 0.9]]], dtype=np.float32)
    mask = top_budget_mask(volume, np.ones(volume.shape, bool), 0.75)
    assert mask.ravel().tolist() == [True, True, False, True]


@pytest.mark.parametrize("roi_mode", ["union", "pred", "gt", "whole_volume"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_suite_and_the_worklist_flag_the_same_voxels(roi_mode: str, seed: int) -> None:
    probs, labels = _case(seed)
    settings = MetricSettings(roi_mode=roi_mode, roi_radius_mm=6.0)  # type: ignore[arg-type]
    result = evaluate_case(probs, labels, SPACING, settings, maps_budget=0.03)
    assert result.maps is not None
    roi = roi_of(argmax_classes(probs), labels, SPACING, settings)
    assert roi.n_voxels == result.metrics.roi_voxels
    mask = top_budget_mask(result.maps.entropy, roi.dense(), 0.03)
    np.testing.assert_array_equal(mask, result.maps.budget_mask)
    assert int(mask.sum()) == math.ceil(0.03 * roi.n_voxels)
    for smaller in (0.0, 0.01, 0.025):
        np.testing.assert_array_equal(narrow_budget_mask(mask, result.maps.entropy, roi.n_voxels, smaller),
                                      top_budget_mask(result.maps.entropy, roi.dense(), smaller))


def test_without_a_reference_the_roi_grows_from_the_prediction() -> None:
    probs, _ = _case(0)
    prediction = argmax_classes(probs)
    prospective = roi_of(prediction, None, SPACING, MetricSettings(roi_radius_mm=6.0)).dense()
    pred_rule = roi_of(prediction, None, SPACING, MetricSettings(roi_mode="pred", roi_radius_mm=6.0)).dense()
    np.testing.assert_array_equal(prospective, pred_rule)
    with pytest.raises(ValueError, match="needs a reference"):
        roi_of(prediction, None, SPACING, MetricSettings(roi_mode="gt"))


def test_time_budgets_are_capped() -> None:
    assert Budget("minutes", 1.0).fraction(100_000, 0.001, 30.0) == (pytest.approx(0.02), False)
    assert Budget("minutes", 10.0).fraction(100_000, 0.001, 30.0) == (DEFAULT_CAP, True)
    assert Budget("minutes", 10.0).fraction(100_000, 0.001, 30.0, cap=0.03) == (0.03, True)
    assert Budget("fraction", 0.02).describe() == "2 % of ROI voxels"


def test_a_time_budget_rounds_down_to_the_stored_budget_steps() -> None:
    """Given the steps the batch stores regions at, a time budget flags the largest step within its minutes (never
    more than they allow), the cap still applies, and below the smallest step the exact fraction stays."""
    steps = (0.005, 0.01, 0.02, 0.03, 0.05)
    assert Budget("minutes", 1.25).fraction(100_000, 0.001, 30.0, steps=steps) == (0.02, False)  # 2.5 % wanted
    assert Budget("minutes", 10.0).fraction(100_000, 0.001, 30.0, cap=0.04, steps=steps) == (0.03, True)
    assert Budget("minutes", 0.1).fraction(100_000, 0.001, 30.0, steps=steps) == (pytest.approx(0.002), False)
    assert Budget("fraction", 0.013).fraction(100_000, 0.001, 30.0, steps=steps) == (0.013, False)
