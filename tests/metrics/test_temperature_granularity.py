"""Temperature granularities in the metric engine: the class-wise vector recovers known per-class temperatures, the
per-group fit falls back to the pooled T below its thresholds, and the vector may change the argmax."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import logsumexp, softmax

from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.temperature import apply_temperature, fit_class_temperatures, fit_temperature
from pipeline.metrics.temperature_groups import CalibrationCase, fit_group_temperatures
from pipeline.phantoms.probabilities import synthetic_case


def _miscalibrated(logits: NDArray[np.float64], temperatures: NDArray[np.float64]) -> NDArray[np.float64]:
    """Probabilities p whose softmax(ln p_c / T_c) is exactly softmax(logits): ln p_c = T_c (z_c + k) with the
    per-voxel k that makes p sum to 1 (Newton on the convex, increasing logsumexp_c T_c (z_c + k))."""
    t = temperatures[:, None]
    k = -logits.max(axis=0)
    for _ in range(100):
        scaled = t * (logits + k)
        value = logsumexp(scaled, axis=0)
        slope = np.sum(t * softmax(scaled, axis=0), axis=0)
        k -= value / slope
    return np.exp(t * (logits + k))


def _well_specified(temperatures: tuple[float, ...], seed: int) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """ROI-like voxels of a synthetic probability map: the map's own log-probabilities are the calibrated model
    (labels drawn from it), observed through the class-wise temperatures."""
    case = synthetic_case((24, 48, 48), (2.5, 3.0, 3.0), seed=seed)
    probs = case.probs.reshape(3, -1).astype(np.float64)
    uncertain = probs.max(axis=0) < 0.99999
    logits = np.log(np.clip(probs[:, uncertain], 1e-12, None)) * 0.5  # spread the confidences
    rng = np.random.default_rng(seed)
    truth = softmax(logits, axis=0)
    labels = (rng.random(truth.shape[1])[None, :] > np.cumsum(truth, axis=0)).sum(axis=0).astype(np.intp)
    return _miscalibrated(logits, np.asarray(temperatures)), labels


def test_class_wise_fit_recovers_known_per_class_temperatures() -> None:
    known = (0.6, 1.8, 1.2)
    probs, labels = _well_specified(known, seed=3)
    assert probs.shape[1] > 10_000, "enough uncertain voxels to identify three temperatures"
    assert np.allclose(probs.sum(axis=0), 1.0)
    fit = fit_class_temperatures(probs, labels)
    assert fit.temperatures == pytest.approx(known, rel=0.08)
    assert fit.nll_after < fit.scalar.nll_after < fit.nll_before, "the vector beats one T, which beats none"
    scalar = fit_temperature(probs, labels)
    assert scalar.temperature == pytest.approx(fit.scalar.temperature) and scalar.n_voxels == fit.n_voxels


def test_class_wise_fit_equal_temperatures_when_one_is_true() -> None:
    probs, labels = _well_specified((1.5, 1.5, 1.5), seed=4)
    fit = fit_class_temperatures(probs, labels)
    assert fit.temperatures == pytest.approx((1.5, 1.5, 1.5), rel=0.08)
    assert fit.nll_after <= fit.scalar.nll_after


def test_class_wise_fit_stays_in_bounds_and_needs_pooled_probabilities() -> None:
    probs, labels = _well_specified((0.6, 1.8, 1.2), seed=3)
    bounded = dataclasses.replace(DEFAULT_SETTINGS, temperature_min=0.9, temperature_max=1.1)
    fit = fit_class_temperatures(probs, labels, bounded)
    assert all(0.9 - 1e-9 <= t <= 1.1 + 1e-9 for t in fit.temperatures)
    with pytest.raises(ValueError, match="after_pooling"):
        fit_class_temperatures(probs, labels, dataclasses.replace(
            DEFAULT_SETTINGS, temperature_mode="per_member", grid_mapping="per_pass"))


def test_a_class_wise_vector_may_change_the_argmax_a_scalar_never_does() -> None:
    probs = np.array([[0.5, 0.9], [0.4, 0.05], [0.1, 0.05]])
    assert np.array_equal(apply_temperature(probs, 3.0).argmax(axis=0), probs.argmax(axis=0))
    calibrated = apply_temperature(probs, (0.5, 4.0, 1.0))
    assert calibrated.argmax(axis=0).tolist() == [1, 0], "0.4 with T = 4 overtakes 0.5 with T = 0.5"
    assert np.allclose(calibrated.sum(axis=0), 1.0)
    assert apply_temperature(probs, (1.0, 1.0, 1.0)) is probs
    with pytest.raises(ValueError, match="one per class"):
        apply_temperature(probs, (1.0, 2.0))


def _group_case(temperature: float, group: str | None, seed: int, voxels: int = 4000) -> CalibrationCase:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(3, voxels))
    labels = (rng.random(voxels)[None, :] > np.cumsum(softmax(logits, axis=0), axis=0)).sum(axis=0)
    return CalibrationCase(softmax(logits * temperature, axis=0), labels.astype(np.intp), group)


def test_group_fit_per_scanner_with_pooled_fallback_below_the_threshold() -> None:
    settings = dataclasses.replace(DEFAULT_SETTINGS, temperature_group_min_cases=2, temperature_group_min_voxels=5000)
    cases = [_group_case(2.0, "A S1", 1), _group_case(2.0, "A S1", 2), _group_case(0.5, "B S2", 3),
             _group_case(0.5, "B S2", 4), _group_case(1.0, "C S3", 5), _group_case(1.0, None, 6)]
    fit = fit_group_temperatures(cases, settings)
    assert sorted(fit.groups) == ["A S1", "B S2"], "C S3 has one case (< 2); unknown is never a group"
    assert fit.temperature_for("A S1") == pytest.approx(2.0, rel=0.1)
    assert fit.temperature_for("B S2") == pytest.approx(0.5, rel=0.1)
    assert fit.temperature_for("C S3") == fit.temperature_for(None) == fit.pooled.temperature
    assert fit.temperature_for("never seen") == fit.pooled.temperature
    assert fit.sizes == {"A S1": (2, 8000), "B S2": (2, 8000), "C S3": (1, 4000)}
    every = np.concatenate([c.scores for c in cases], axis=1), np.concatenate([c.labels for c in cases])
    assert fit.pooled == fit_temperature(*every, settings), "the fallback is the one-T fit on every case"
    few_voxels = dataclasses.replace(settings, temperature_group_min_voxels=8001)
    assert fit_group_temperatures(cases, few_voxels).groups == {}, "below the voxel threshold: pooled for all"


def test_granularity_settings_are_validated_and_read_back_from_json() -> None:
    settings = MetricSettings.from_mapping({"temperature_granularities": ["configuration", "class", "scanner"]})
    assert settings.temperature_granularities == ("configuration", "class", "scanner")
    assert MetricSettings(**dataclasses.asdict(settings)) == settings
    for bad in (["class"], ["configuration", "configuration"], ["configuration", "voxel"], []):
        with pytest.raises(ValueError, match="temperature_granularities"):
            MetricSettings(temperature_granularities=tuple(bad))
    with pytest.raises(ValueError, match="after_pooling"):
        MetricSettings(temperature_granularities=("configuration", "class"), temperature_mode="per_member",
                       grid_mapping="per_pass")
    with pytest.raises(ValueError, match="min_cases"):
        MetricSettings(temperature_group_min_cases=0)
