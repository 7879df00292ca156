"""The fixed-ROI entropy and its in-distribution rank against SciPy's distance transform and hand counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from pipeline.metrics.shift import fixed_roi_entropy, rank_against


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fixed_roi_mean_matches_a_distance_transform(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape, spacing, radius = (14, 30, 26), (3.0, 1.2, 0.8), 4.5
    structure = np.zeros(shape, dtype=bool)
    structure[5:8, 10:14, 9:12] = True
    structure[rng.integers(0, 14), rng.integers(0, 30), rng.integers(0, 26)] = True
    entropy = rng.random(shape).astype(np.float32)
    within = distance_transform_edt(~structure, sampling=spacing) <= radius
    expected = float(np.mean(entropy[within], dtype=np.float64))
    assert fixed_roi_entropy(entropy, structure, spacing, radius) == pytest.approx(expected, rel=1e-12)


def test_the_roi_follows_the_reference_not_the_entropy() -> None:
    """Two maps that differ only far from the structure have the same fixed-ROI value."""
    structure = np.zeros((10, 20, 20), dtype=bool)
    structure[4:6, 8:11, 8:11] = True
    near = np.full(structure.shape, 0.2, dtype=np.float32)
    far = near.copy()
    far[:, :, 18:] = 1.0
    assert fixed_roi_entropy(near, structure, (2.0, 1.0, 1.0), 3.0) == fixed_roi_entropy(
        far, structure, (2.0, 1.0, 1.0), 3.0) == pytest.approx(0.2)


@pytest.mark.parametrize(("value", "below", "ties", "percentile", "above_all"), [
    (0.5, 6, 0, 100.0, True), (0.3, 3, 1, 350 / 6, False), (0.0, 0, 0, 0.0, False)])
def test_rank_counts_below_and_ties(value: float, below: int, ties: int, percentile: float, above_all: bool) -> None:
    rank = rank_against(value, [0.1, 0.2, 0.25, 0.3, 0.35, 0.4])
    assert (rank.below, rank.ties, rank.n) == (below, ties, 6)
    assert rank.percentile == pytest.approx(percentile) and rank.above_all is above_all


@pytest.mark.parametrize(("call", "message"), [
    (lambda: fixed_roi_entropy(np.zeros((2, 2, 2)), np.zeros((2, 2, 2), bool), (1, 1, 1), 1.0), "holds no voxel"),
    (lambda: fixed_roi_entropy(np.zeros((2, 2, 2)), np.ones((2, 2, 3), bool), (1, 1, 1), 1.0), "same"),
    (lambda: fixed_roi_entropy(np.zeros((2, 2, 2)), np.ones((2, 2, 2)), (1, 1, 1), 1.0), "boolean"),
    (lambda: fixed_roi_entropy(np.zeros((2, 2, 2)), np.ones((2, 2, 2), bool), (1, 1, 1), -1.0), "radius_mm"),
    (lambda: rank_against(0.1, []), "at least one"),
    (lambda: rank_against(float("nan"), [0.1]), "finite"),
])
def test_bad_inputs_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
