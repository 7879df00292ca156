"""Property tests of the sanity properties listed at the end of ``shared/spec/metrics.md``, and of the invariants
the engine documents (ranges, pooling, ROI, budget maps, policies)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.special import log_softmax, logsumexp

import pipeline.metrics.roi as roi_module
from pipeline.metrics.budget import ueo_curve
from pipeline.metrics.calibration import (
    brier_score,
    expected_calibration_error,
    normalized_entropy,
    reliability_bins,
)
from pipeline.metrics.cohort import pooled_bins
from pipeline.metrics.pooling import MemberPool, pool_members
from pipeline.metrics.review_budget import descending_order
from pipeline.metrics.roi import dilate_mm
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import calibration_voxels, evaluate_case
from pipeline.metrics.temperature import apply_temperature, fit_temperature
from tests.metrics.cases import (
    BUDGET_FRACTIONS,
    Case,
    argmax64,
    ece_oracle,
    random_case,
    roi_oracle,
    softmax64,
    structured_case,
    temperature_oracle,
    top_label,
    union_roi_oracle,
)

SPACINGS = st.sampled_from([0.5, 0.8, 1.0, 1.25, 2.0, 3.0])


@dataclass(frozen=True)
class CaseSpec:
    """The recipe of a synthetic case (kept small, so hypothesis reports a readable falsifying example)."""

    seed: int
    n_classes: int
    spacing: tuple[float, float, float]
    structured: bool
    shape: tuple[int, int, int]
    logit_scale: float

    def build(self, dtype: type[np.floating] = np.float64) -> Case:
        if self.structured:
            case = structured_case(self.seed, self.n_classes, shape=self.shape, spacing=self.spacing, n_structures=2)
        else:
            case = random_case(self.seed, self.n_classes, self.shape, self.spacing, logit_scale=self.logit_scale)
        return case.astype(dtype)


@st.composite
def cases(draw: st.DrawFn) -> CaseSpec:
    """A random or structured case with 2-4 classes, a small grid and an anisotropic spacing."""
    structured = draw(st.booleans())
    shape = (8, 20, 20) if structured else (draw(st.integers(1, 5)), draw(st.integers(2, 10)), draw(st.integers(2, 10)))
    return CaseSpec(
        seed=draw(st.integers(0, 2**32 - 1)),
        n_classes=draw(st.integers(2, 4)),
        spacing=(draw(SPACINGS), draw(SPACINGS), draw(SPACINGS)),
        structured=structured,
        shape=shape,
        logit_scale=draw(st.sampled_from([0.3, 3.0, 12.0])),
    )


def _nll(probs: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    p = np.asarray(probs, dtype=np.float64)
    return float(-np.mean(np.log(p[labels, np.arange(labels.size)])))


def _sharpened(case: Case, factor: float) -> Case:
    """The same case with its probabilities raised to ``factor`` and renormalised (over-confident for factor > 1)."""
    return Case(softmax64(np.log(case.probs) * factor), case.labels, case.spacing)


# --- Temperature scaling ---------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(spec=cases(), temperature=st.floats(0.05, 20.0), float32=st.booleans())
def test_temperature_leaves_argmax_and_dsc_bit_identical(spec: CaseSpec, temperature: float, float32: bool) -> None:
    case = spec.build(np.float32 if float32 else np.float64)
    plain = evaluate_case(case.probs, case.labels, case.spacing, maps_budget=0.02)
    scaled = evaluate_case(case.probs, case.labels, case.spacing, temperature=temperature, maps_budget=0.02)
    assert plain.maps is not None and scaled.maps is not None
    assert np.array_equal(plain.maps.prediction, scaled.maps.prediction)
    assert np.array_equal(plain.maps.prediction, argmax64(case.probs))
    # the calibrated map itself has the same argmax wherever it has a clear winner (TS is monotone per voxel), so
    # reporting the uncalibrated argmax under TS is the spec's property, not a shortcut around it
    calibrated = apply_temperature(case.probs, temperature)
    top2 = np.sort(calibrated, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-6 * top2[1]
    assert np.array_equal(argmax64(calibrated)[clear], plain.maps.prediction[clear])
    assert np.array_equal(plain.metrics.dsc, scaled.metrics.dsc, equal_nan=True)  # bit-identical
    assert np.array_equal(plain.metrics.dsc_mean_fg, scaled.metrics.dsc_mean_fg, equal_nan=True)
    assert plain.metrics.error_voxels == scaled.metrics.error_voxels
    assert plain.metrics.roi_voxels == scaled.metrics.roi_voxels


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), temperature=st.floats(0.05, 20.0))
def test_apply_temperature_keeps_a_clear_argmax(seed: int, temperature: float) -> None:
    probs = np.random.default_rng(seed).dirichlet(np.full(3, 0.5), size=400).T
    top2 = np.sort(probs, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-9 * top2[1]  # a winner by more than rounding
    calibrated = apply_temperature(probs, temperature)
    assert np.array_equal(np.argmax(calibrated, axis=0)[clear], np.argmax(probs, axis=0)[clear])
    np.testing.assert_allclose(calibrated, temperature_oracle(probs, temperature), rtol=0, atol=1e-12)


def _calibration_set(cases_: list[Case]) -> tuple[NDArray[np.floating], NDArray[np.integer]]:
    parts = [calibration_voxels(c.probs, c.labels, c.spacing) for c in cases_]
    return np.concatenate([p for p, _ in parts], axis=1), np.concatenate([lab for _, lab in parts])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**20), sharpen=st.sampled_from([0.3, 1.0, 3.0]))
def test_fitted_temperature_does_not_raise_calibration_nll(seed: int, sharpen: float) -> None:
    calibration = [
        _sharpened(structured_case(seed + i, 3, shape=(8, 20, 20), n_structures=2), sharpen) for i in range(2)
    ]
    for case in calibration:  # calibration_voxels returns exactly the ROI voxels, in raster order
        probs, labels = calibration_voxels(case.probs, case.labels, case.spacing)
        roi = union_roi_oracle(case)
        assert np.array_equal(probs, case.probs[:, roi]) and np.array_equal(labels, case.labels[roi])
    probs, labels = _calibration_set(calibration)
    fit = fit_temperature(probs, labels)
    assert 0.05 <= fit.temperature <= 20.0
    assert fit.n_voxels == labels.size
    before = _nll(probs, labels)
    after = _nll(temperature_oracle(probs, fit.temperature), labels)
    assert fit.nll_before == pytest.approx(before, rel=1e-9)
    assert fit.nll_after == pytest.approx(after, rel=1e-9)
    assert after <= before + 1e-12


def test_fitted_temperature_strictly_lowers_nll_of_an_over_confident_model() -> None:
    calibration = [_sharpened(structured_case(seed, 3), 4.0) for seed in (11, 12, 13)]
    probs, labels = _calibration_set(calibration)
    fit = fit_temperature(probs, labels)
    before = _nll(probs, labels)
    after = _nll(temperature_oracle(probs, fit.temperature), labels)
    assert fit.temperature > 1.5  # softening, as it must for a model sharpened 4x
    assert after < before - 0.05
    # And T is the minimiser: nearby temperatures are no better.
    for factor in (0.9, 1.1):
        assert after <= _nll(temperature_oracle(probs, fit.temperature * factor), labels) + 1e-9
    # The under-confident mirror image is sharpened (T < 1).
    soft_probs, soft_labels = _calibration_set([_sharpened(structured_case(seed, 3), 0.25) for seed in (11, 12)])
    assert fit_temperature(soft_probs, soft_labels).temperature < 1.0


def _pooled_nll(members: NDArray[np.float64], labels: NDArray[np.intp], rule: str, temperature: float) -> float:
    """NLL of the reference under the pooled distribution of member logits (K, C, n) scaled by 1/T per member."""
    if rule == "prob_mean":
        log_pooled = logsumexp(log_softmax(members / temperature, axis=1), axis=0) - math.log(members.shape[0])
    else:
        log_pooled = log_softmax(members.mean(axis=0) / temperature, axis=0)
    return float(-np.mean(log_pooled[labels, np.arange(labels.size)]))


@pytest.mark.parametrize("rule", ["prob_mean", "logit_mean"])
def test_per_member_temperature_fits_the_pooled_nll(rule: str) -> None:
    rng = np.random.default_rng(5)
    n_members, n_classes, n = 4, 3, 4000
    truth = rng.normal(scale=2.0, size=(n_classes, n))
    cumulative = np.cumsum(softmax64(truth), axis=0)
    labels = (rng.random(n)[None, :] > cumulative).sum(axis=0).astype(np.intp)
    members = np.stack([4.0 * truth + rng.normal(scale=3.0, size=truth.shape) for _ in range(n_members)])
    config = MetricSettings(temperature_mode="per_member", pooling=rule)  # type: ignore[arg-type]
    fit = fit_temperature(members.astype(np.float32), labels, config)
    members32 = members.astype(np.float32).astype(np.float64)
    before = _pooled_nll(members32, labels, rule, 1.0)
    after = _pooled_nll(members32, labels, rule, fit.temperature)
    assert fit.nll_before == pytest.approx(before, rel=1e-9)
    assert fit.nll_after == pytest.approx(after, rel=1e-9)
    assert after < before - 0.1  # members are 4x over-confident
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 801))  # steps of 0.75 %
    best = grid[int(np.argmin([_pooled_nll(members32, labels, rule, t) for t in grid]))]
    assert fit.temperature == pytest.approx(best, rel=0.01)
    # The pooled probabilities of the per-member mode use the same T.
    pooled = pool_members(list(members.astype(np.float32)), rule, fit.temperature)  # type: ignore[arg-type]
    assert _nll(pooled, labels) == pytest.approx(after, abs=1e-5)


# --- UEO -------------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(spec=cases(), temperature=st.sampled_from([None, 0.5, 2.0]), auc_mode=st.sampled_from(["roc", "capture"]))
def test_suite_ueo_bound_auc_ranges_and_metric_ranges(spec: CaseSpec, temperature: float | None, auc_mode: str) -> None:
    case = spec.build()
    config = MetricSettings(auc_mode=auc_mode)  # type: ignore[arg-type]
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings=config, temperature=temperature).metrics
    flagged = metrics.curve.flagged_voxels
    n_errors = metrics.error_voxels
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.where(flagged + n_errors > 0, 2 * np.minimum(flagged, n_errors) / (flagged + n_errors), 0.0)
    assert np.all(metrics.curve.ueo <= bound + 1e-12)
    assert metrics.curve.ueo[0] == 0.0
    assert 0.0 <= metrics.ueo_auc <= 1.0
    assert 0.0 <= metrics.ece <= 1.0
    assert 0.0 <= metrics.brier <= 2.0
    assert 0.0 <= metrics.mean_entropy_roi <= 1.0
    for auc in (metrics.fp_tp_auc, metrics.fn_tn_auc):
        assert math.isnan(auc) or 0.0 <= auc <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    error_rate=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    tied=st.booleans(),
)
def test_ueo_curve_bound_and_area_range(n: int, error_rate: float, seed: int, tied: bool) -> None:
    rng = np.random.default_rng(seed)
    errors = rng.random(n) < error_rate
    scores = rng.integers(0, 3, n).astype(np.float64) if tied else rng.random(n)
    curve = ueo_curve(descending_order(scores), errors, BUDGET_FRACTIONS, voxel_ml=1.0)
    k, e = curve.flagged_voxels, int(np.count_nonzero(errors))
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = np.where(k + e > 0, 2 * np.minimum(k, e) / (k + e), 0.0)
    assert np.all(curve.ueo <= bound + 1e-12)
    assert np.all(curve.hits <= np.minimum(k, e))
    assert 0.0 <= curve.area() <= 1.0


@settings(max_examples=40, deadline=None)
@given(thousands=st.integers(1, 6), grid_index=st.integers(1, 50), seed=st.integers(0, 2**32 - 1))
def test_perfect_uncertainty_gives_ueo_one_at_the_error_fraction(thousands: int, grid_index: int, seed: int) -> None:
    # |R| a multiple of 1000 and |E| = grid_index·|R|/1000, so b = |E|/|R| = grid_index/1000 is a grid point.
    n_roi = 1000 * thousands
    n_errors = grid_index * thousands
    rng = np.random.default_rng(seed)
    errors = np.zeros(n_roi, dtype=bool)
    errors[rng.choice(n_roi, size=n_errors, replace=False)] = True
    entropy = np.where(errors, 1.0, rng.uniform(0.0, 0.999, n_roi))  # H = 1 exactly on E, < 1 elsewhere
    curve = ueo_curve(descending_order(entropy), errors, BUDGET_FRACTIONS, voxel_ml=1.0)
    assert BUDGET_FRACTIONS[grid_index] == Fraction(n_errors, n_roi)
    assert curve.ueo[grid_index] == 1.0
    assert curve.recall[grid_index] == 1.0 and curve.precision[grid_index] == 1.0
    k = curve.flagged_voxels
    np.testing.assert_allclose(curve.ueo[1:], 2 * np.minimum(k, n_errors)[1:] / (k + n_errors)[1:], rtol=0, atol=1e-15)


def test_random_uncertainty_gives_the_chance_ueo() -> None:
    # With H independent of E, |U_b ∩ E| is hypergeometric: mean k|E|/n with k = ceil(b n) ≈ b|R|, so
    # UEO(b) ≈ 2b|E|/(b|R|+|E|). Tolerance: 5 hypergeometric SDs of UEO at each b (a fixed seed makes the test
    # deterministic; 5 SD leaves room for any seed), plus the ceil() effect, which is < 1 voxel.
    n, n_errors = 200_000, 6_000
    rng = np.random.default_rng(123)
    errors = np.zeros(n, dtype=bool)
    errors[rng.choice(n, size=n_errors, replace=False)] = True
    curve = ueo_curve(descending_order(rng.random(n)), errors, BUDGET_FRACTIONS, voxel_ml=1.0)
    b = np.array([float(x) for x in BUDGET_FRACTIONS])
    expected = 2 * b * n_errors / (b * n + n_errors)
    k = curve.flagged_voxels.astype(np.float64)
    p = n_errors / n
    sd_hits = np.sqrt(k * p * (1 - p) * (n - k) / (n - 1))
    tolerance = 5 * 2 * sd_hits / (k + n_errors) + 2 / (k + n_errors)
    assert np.all(np.abs(curve.ueo - expected) <= tolerance)
    expected_area = float(np.trapezoid(expected, b) / 0.05)
    assert curve.area() == pytest.approx(expected_area, abs=float(tolerance.max()))
    assert curve.area() < 0.1  # far from a useful uncertainty


# --- Ranges of the voxel measures ------------------------------------------------------------------------------


@st.composite
def probability_columns(draw: st.DrawFn) -> NDArray[np.floating]:
    """(C, n) probabilities mixing Dirichlet draws (sharp and flat), exact one-hot and exact uniform columns."""
    n_classes = draw(st.integers(2, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    alpha = draw(st.sampled_from([0.01, 0.3, 1.0, 50.0]))
    rng = np.random.default_rng(seed)
    columns = [rng.dirichlet(np.full(n_classes, alpha), size=50).T]
    columns.append(np.eye(n_classes))
    columns.append(np.full((n_classes, 3), 1.0 / n_classes))
    return np.concatenate(columns, axis=1).astype(dtype)


@settings(max_examples=80, deadline=None)
@given(probs=probability_columns(), perturb=st.floats(-1e-3, 1e-3))
def test_entropy_is_in_unit_interval(probs: NDArray[np.floating], perturb: float) -> None:
    # Inputs may deviate from Σp = 1 by settings.sum_tolerance (1e-3); H must still stay in [0, 1].
    n_classes = probs.shape[0]
    assert np.all(normalized_entropy(probs)[50 : 50 + n_classes] == 0.0)  # one-hot columns: no uncertainty
    perturbed = (probs * (1 + perturb)).astype(probs.dtype)
    for p in (probs, perturbed):
        entropy = normalized_entropy(p)
        assert entropy.dtype == p.dtype
        assert float(entropy.min()) >= 0.0
        assert float(entropy.max()) <= 1.0


@settings(max_examples=80, deadline=None)
@given(probs=probability_columns(), label_seed=st.integers(0, 2**32 - 1), n_bins=st.integers(1, 30))
def test_ece_and_brier_ranges(probs: NDArray[np.floating], label_seed: int, n_bins: int) -> None:
    labels = np.random.default_rng(label_seed).integers(0, probs.shape[0], probs.shape[1])
    confidence, correct = top_label(probs, labels)
    ece = expected_calibration_error(confidence, correct, n_bins)
    assert 0.0 <= ece <= 1.0
    assert ece == pytest.approx(ece_oracle(confidence, correct, n_bins), abs=1e-12)
    assert 0.0 <= brier_score(probs, labels) <= 2.0
    assert 0.0 <= brier_score(probs, labels, foreground_only=True) <= 2.0


def test_brier_extremes() -> None:
    one_hot = np.eye(3)
    assert brier_score(one_hot, np.array([0, 1, 2])) == 0.0
    assert brier_score(one_hot, np.array([1, 2, 0])) == 2.0


# --- Pooling ---------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n_members=st.integers(1, 5),
    n_classes=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.1, 3.0, 30.0]),
    member_temperature=st.sampled_from([1.0, 0.5, 2.5]),
)
def test_pooled_probabilities(
    n_members: int, n_classes: int, seed: int, scale: float, member_temperature: float
) -> None:
    rng = np.random.default_rng(seed)
    members = [rng.normal(scale=scale, size=(n_classes, 2, 3, 4)).astype(np.float32) for _ in range(n_members)]
    brute_prob = np.mean([softmax64(m / member_temperature) for m in members], axis=0)
    brute_logit = softmax64(np.mean([m.astype(np.float64) for m in members], axis=0) / member_temperature)
    # The pool works in float32 by design: z/T carries a rounding error of about eps32·|z/T|, which moves each
    # probability by up to about that much (p(1-p) <= 1/4, and a mean of K members adds a few more roundings).
    largest = max(float(np.abs(m).max()) for m in members) / member_temperature
    atol = 1e-6 + 4 * float(np.finfo(np.float32).eps) * largest
    for rule, brute in (("prob_mean", brute_prob), ("logit_mean", brute_logit)):
        pool = MemberPool(rule, member_temperature)  # type: ignore[arg-type]
        for m in members:
            pool.add(m)
        pooled = pool.probabilities()
        assert pool.count == n_members
        assert pooled.dtype == np.float32 and pooled.shape == members[0].shape
        np.testing.assert_allclose(pooled.sum(axis=0, dtype=np.float64), 1.0, rtol=0, atol=1e-5)
        np.testing.assert_allclose(pooled, brute, rtol=0, atol=atol)
        np.testing.assert_array_equal(pool_members(members, rule, member_temperature), pooled)  # type: ignore[arg-type]
    for m in members:  # the pool never modifies its inputs
        assert m.dtype == np.float32


# --- Cohort-pooled reliability bins ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_pooled_bins_give_the_ece_of_the_concatenated_voxels(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    confidences = [rng.random(n) ** 0.3 for n in sizes]
    corrects = [rng.random(n) < 0.7 for n in sizes]
    pooled = pooled_bins([reliability_bins(c, k, 15) for c, k in zip(confidences, corrects, strict=True)])
    all_conf, all_correct = np.concatenate(confidences), np.concatenate(corrects)
    direct = reliability_bins(all_conf, all_correct, 15)
    assert np.array_equal(pooled.count, direct.count)
    assert np.array_equal(pooled.sum_correct, direct.sum_correct)
    np.testing.assert_allclose(pooled.sum_confidence, direct.sum_confidence, rtol=1e-12, atol=0)
    assert pooled.ece() == pytest.approx(expected_calibration_error(all_conf, all_correct, 15), abs=1e-12)
    assert pooled.ece() == pytest.approx(ece_oracle(all_conf, all_correct, 15), abs=1e-12)


# --- ROI -------------------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 11), st.integers(1, 11)),
    density=st.floats(0.0, 0.3),
    seed=st.integers(0, 2**32 - 1),
    spacing=st.tuples(
        st.one_of(SPACINGS, st.floats(0.3, 4.0)),
        st.one_of(SPACINGS, st.floats(0.3, 4.0)),
        st.one_of(SPACINGS, st.floats(0.3, 4.0)),
    ),
    radius=st.one_of(st.just(0.0), st.sampled_from([1.0, 2.5, 3.0, 5.0, 15.0]), st.floats(0.0, 12.0)),
    block=st.sampled_from([None, 1, 2, 3]),
)
def test_dilate_mm_equals_full_volume_edt(
    shape: tuple[int, int, int],
    density: float,
    seed: int,
    spacing: tuple[float, float, float],
    radius: float,
    block: int | None,
) -> None:
    rng = np.random.default_rng(seed)
    seed_mask = rng.random(shape) < density
    seed_mask.flat[rng.integers(seed_mask.size)] = True
    expected = roi_oracle(seed_mask, spacing, radius)
    with pytest.MonkeyPatch.context() as patch:
        if block is not None:
            patch.setattr(roi_module, "_BLOCK", block)
        roi = dilate_mm(seed_mask, spacing, radius)
    assert np.array_equal(roi.dense(), expected)
    assert roi.n_voxels == int(np.count_nonzero(expected))
    assert np.array_equal(np.flatnonzero(expected), roi.flat_indices())
    values = rng.random(shape)
    assert np.array_equal(roi.gather(values), values[expected])
    assert np.array_equal(roi.gather(values, roi.flat_indices()), values[expected])
    if radius == 0.0:
        assert np.array_equal(roi.dense(), seed_mask)


def test_dilate_mm_with_one_voxel_blocks_on_a_long_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two seeds 40 slices apart, one-voxel blocks: separate component boxes whose 15 mm balls overlap in between.
    seed_mask = np.zeros((60, 12, 9), dtype=bool)
    seed_mask[10, 6, 4] = True
    seed_mask[50, 2, 1] = True
    spacing = (0.7, 2.0, 1.3)
    monkeypatch.setattr(roi_module, "_BLOCK", 1)
    assert np.array_equal(dilate_mm(seed_mask, spacing, 15.0).dense(), roi_oracle(seed_mask, spacing, 15.0))


# --- Policies, modes and maps ----------------------------------------------------------------------------------


def _error_free_case(seed: int) -> Case:
    labels = structured_case(seed, 3, shape=(6, 16, 16), n_structures=2).labels
    probs = np.full((3, *labels.shape), 0.1)
    np.put_along_axis(probs, labels[None], 0.8, axis=0)
    return Case(probs, labels, (2.0, 1.0, 1.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_empty_error_policy(seed: int) -> None:
    case = _error_free_case(seed)
    zero = evaluate_case(case.probs, case.labels, case.spacing, settings=MetricSettings(empty_error_policy="zero"))
    exclude = evaluate_case(
        case.probs, case.labels, case.spacing, settings=MetricSettings(empty_error_policy="exclude")
    )
    assert zero.metrics.error_voxels == 0 and exclude.metrics.error_voxels == 0
    assert zero.metrics.ueo_auc == 0.0
    assert np.all(zero.metrics.curve.ueo == 0.0)
    assert math.isnan(exclude.metrics.ueo_auc)
    assert np.all(np.isnan(exclude.metrics.curve.ueo))
    assert np.all(np.isnan(zero.metrics.curve.recall))
    assert math.isnan(zero.metrics.fp_tp_auc) and math.isnan(zero.metrics.fn_tn_auc)
    assert zero.metrics.to_dict()["ueo_auc"] == 0.0 and exclude.metrics.to_dict()["ueo_auc"] is None


@settings(max_examples=25, deadline=None)
@given(spec=cases())
def test_capture_mode_is_in_unit_interval(spec: CaseSpec) -> None:
    case = spec.build()
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings=MetricSettings(auc_mode="capture")).metrics
    roc = evaluate_case(case.probs, case.labels, case.spacing).metrics
    for capture in (metrics.fp_tp_auc, metrics.fn_tn_auc):
        assert math.isnan(capture) or 0.0 <= capture <= 1.0
    probs, labels = case.probs[:, union_roi_oracle(case)], case.labels[union_roi_oracle(case)]
    prediction = np.argmax(probs, axis=0)
    errors = prediction != labels
    assert math.isnan(metrics.fp_tp_auc) == (not errors[prediction > 0].any())
    assert math.isnan(metrics.fn_tn_auc) == (not errors[prediction == 0].any())
    assert metrics.ueo_auc == roc.ueo_auc  # the option touches the AUCs only


@settings(max_examples=30, deadline=None)
@given(spec=cases(), permille=st.integers(0, 1000), temperature=st.sampled_from([None, 0.7, 1.8]))
def test_budget_mask_flags_the_most_uncertain_roi_voxels(
    spec: CaseSpec, permille: int, temperature: float | None
) -> None:
    case = spec.build()
    budget = permille / 1000
    result = evaluate_case(case.probs, case.labels, case.spacing, temperature=temperature, maps_budget=budget)
    maps = result.maps
    assert maps is not None
    roi = union_roi_oracle(case)
    n_roi = int(np.count_nonzero(roi))
    assert result.metrics.roi_voxels == n_roi
    flagged = maps.budget_mask
    assert int(np.count_nonzero(flagged)) == -(-permille * n_roi // 1000)  # ceil(b|R|) in integers
    assert not np.any(flagged & ~roi)
    if flagged.any() and (roi & ~flagged).any():
        assert float(maps.entropy[flagged].min()) >= float(maps.entropy[roi & ~flagged].max())
    assert maps.budget == budget
    assert np.array_equal(maps.prediction, argmax64(case.probs))
    assert np.array_equal(maps.error, maps.prediction != case.labels)
    assert maps.entropy.dtype == np.float32
    assert float(maps.entropy.min()) >= 0.0 and float(maps.entropy.max()) <= 1.0


@settings(max_examples=20, deadline=None)
@given(spec=cases(), float32=st.booleans(), temperature=st.sampled_from([None, 1.6]))
def test_requesting_maps_does_not_change_the_metrics(spec: CaseSpec, float32: bool, temperature: float | None) -> None:
    case = spec.build(np.float32 if float32 else np.float64)
    plain = evaluate_case(case.probs, case.labels, case.spacing, temperature=temperature).metrics
    mapped = evaluate_case(case.probs, case.labels, case.spacing, temperature=temperature, maps_budget=0.03).metrics
    assert plain.to_dict() == mapped.to_dict()
