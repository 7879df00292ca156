"""The compiled kernels against plain NumPy / SciPy oracles on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

from pipeline.metrics.kernels import (
    SEED_PREDICTION,
    SEED_REFERENCE,
    SEED_UNION,
    block_occupancy,
    pooled_nll,
    ranked_auroc_pair,
    reliability_sums,
    scan_volume,
    stable_descending_order,
)

FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float32, st.integers(0, 300), elements=st.one_of(FINITE, st.sampled_from([0.0, -0.0, 1.0]))))
def test_radix_order_equals_stable_argsort_float32(values: np.ndarray) -> None:
    expected = np.argsort(-(values + np.float32(0)), kind="stable")
    assert np.array_equal(stable_descending_order(values), expected)


@settings(max_examples=40, deadline=None)
@given(values=arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e300, 1e300, allow_nan=False)))
def test_radix_order_equals_stable_argsort_float64(values: np.ndarray) -> None:
    expected = np.argsort(-(values + 0.0), kind="stable")
    assert np.array_equal(stable_descending_order(values), expected)


def test_radix_order_rejects_nan_and_2d() -> None:
    with pytest.raises(ValueError, match="finite"):
        stable_descending_order(np.array([0.1, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        stable_descending_order(np.zeros((2, 2), dtype=np.float32))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 400), levels=st.integers(1, 20))
def test_auroc_pair_equals_sklearn_per_subset(seed: int, n: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, n).astype(np.float32) / levels
    positive = rng.random(n) < 0.3
    first = rng.random(n) < 0.5
    pair = ranked_auroc_pair(stable_descending_order(scores), scores, positive, first)
    for value, subset in zip(pair, (first, ~first), strict=True):
        labels = positive[subset]
        if labels.all() or not labels.any():
            assert np.isnan(value)
        else:
            assert value == pytest.approx(roc_auc_score(labels, scores[subset]), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bins=st.integers(1, 40))
def test_reliability_sums_equal_searchsorted_bins(seed: int, n_bins: int) -> None:
    rng = np.random.default_rng(seed)
    edges = np.arange(n_bins + 1) / n_bins
    confidence = np.concatenate([rng.random(500), edges, np.nextafter(edges, 2.0).clip(0, 1)])
    correct = rng.random(confidence.size) < 0.7
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count, sum_confidence, sum_correct = reliability_sums(confidence, correct, n_bins)
    assert np.array_equal(count, np.bincount(index, minlength=n_bins))
    assert np.allclose(sum_confidence, np.bincount(index, weights=confidence, minlength=n_bins), rtol=0, atol=1e-12)
    assert np.array_equal(sum_correct, np.bincount(index[correct], minlength=n_bins))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), block=st.integers(1, 9))
def test_block_occupancy_equals_padded_any(seed: int, block: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((11, 13, 17)) < 0.01
    padded = np.zeros(tuple(-(-n // block) * block for n in mask.shape), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
    z, y, x = (n // block for n in padded.shape)
    expected = padded.reshape(z, block, y, block, x, block).any(axis=(1, 3, 5))
    assert np.array_equal(block_occupancy(mask, block), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scan_volume_seed_rules_and_counts(dtype: type) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(3, 5, 6, 7))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(dtype)
    labels = rng.integers(0, 3, (5, 6, 7)).astype(np.int16)
    prediction = np.argmax(probs, axis=0)
    rules = {
        SEED_UNION: (prediction > 0) | (labels > 0),
        SEED_PREDICTION: prediction > 0,
        SEED_REFERENCE: labels > 0,
    }
    for rule, expected in rules.items():
        seed, pred, prediction_counts, reference_counts, status = scan_volume(probs, labels, rule, 1e-3, True)
        assert status == (-1, 0)
        assert np.array_equal(seed, expected)
        assert pred is not None and np.array_equal(pred, prediction)
    _, _, prediction_counts, _, _ = scan_volume(probs, labels, SEED_REFERENCE, 1e-3, False)
    _, _, _, reference_counts, _ = scan_volume(probs, labels, SEED_PREDICTION, 1e-3, False)
    assert np.array_equal(prediction_counts, np.bincount(prediction.ravel(), minlength=3))
    assert np.array_equal(reference_counts, np.bincount(labels.ravel(), minlength=3))


@pytest.mark.parametrize(("value", "reason"), [(-0.5, 1), (np.nan, 1), (np.inf, 2), (0.7, 2)])
def test_scan_volume_reports_the_first_bad_slice(value: float, reason: int) -> None:
    probs = np.full((2, 4, 3, 3), 0.5, dtype=np.float32)
    probs[1, 2, 1, 1] = value
    labels = np.zeros((4, 3, 3), dtype=np.uint8)
    assert scan_volume(probs, labels, SEED_UNION, 1e-3, False)[4] == (2, reason)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature", [0.05, 0.7, 1.0, 3.0, 20.0])
def test_pooled_nll_equals_scipy_logsumexp(seed: int, temperature: float) -> None:
    rng = np.random.default_rng(seed)
    n_classes, n = int(rng.integers(2, 6)), int(rng.integers(1, 5000))
    probs = rng.dirichlet(np.full(n_classes, 0.3), size=n).T
    log_probs = np.log(np.maximum(probs, np.finfo(np.float64).tiny))
    labels = rng.integers(0, n_classes, n).astype(np.intp)
    scaled = log_probs / temperature
    expected = float(np.mean(logsumexp(scaled, axis=0) - scaled[labels, np.arange(n)]))
    assert pooled_nll(log_probs, labels, temperature) == pytest.approx(expected, rel=1e-12, abs=1e-12)
