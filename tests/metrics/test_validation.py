"""Bad input is answered with a ValueError whose message names the offending argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from pipeline.metrics.cohort import paired_comparison, summarise_repeats
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import calibration_voxels, evaluate_case
from pipeline.metrics.temperature import fit_temperature

SPACING = (2.0, 1.0, 1.0)


def _good() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(3, 4, 5)).transpose(3, 0, 1, 2).copy()
    labels = rng.integers(0, 3, size=(3, 4, 5))
    labels[0, 0, 0] = 1
    return probs, labels


def _with(probs: NDArray[np.float64], index: tuple[int, ...], value: float) -> NDArray[np.float64]:
    bad = probs.copy()
    bad[index] = value
    return bad


def test_the_good_input_is_accepted() -> None:
    probs, labels = _good()
    assert evaluate_case(probs, labels, SPACING).metrics.roi_voxels > 0


# --- probs -----------------------------------------------------------------------------------------------------


def _bad_probs() -> list[tuple[str, Any, str]]:
    probs, _ = _good()
    shifted = probs.copy()
    shifted[0] += 0.01  # Σ_c p = 1.01, beyond the default tolerance 1e-3
    return [
        ("3-d", probs[:, 0], r"probs must be shaped \(C, Z, Y, X\)"),
        ("5-d", probs[None], r"probs must be shaped \(C, Z, Y, X\)"),
        ("one class", np.ones((1, 3, 4, 5)), r"probs must have at least 2 classes"),
        ("int dtype", (probs > 0.5).astype(np.int64), r"probs must be float32 or float64"),
        ("float16", probs.astype(np.float16), r"probs must be float32 or float64"),
        ("list", probs.tolist(), r"probs must be a numpy array"),
        ("NaN", _with(probs, (0, 1, 1, 1), np.nan), r"probs must be finite and non-negative"),
        ("+inf", _with(probs, (1, 0, 2, 3), np.inf), r"probs must sum to 1 over classes .*deviation inf"),
        ("-inf", _with(probs, (1, 0, 2, 3), -np.inf), r"probs must be finite and non-negative"),
        ("negative", _with(probs, (2, 2, 3, 4), -0.01), r"probs must be finite and non-negative"),
        ("not summing to 1", shifted, r"probs must sum to 1 over classes"),
    ]


@pytest.mark.parametrize(
    ("bad", "message"), [(b, m) for _, b, m in _bad_probs()], ids=[i for i, _, _ in _bad_probs()]
)
def test_bad_probs(bad: Any, message: str) -> None:
    _, labels = _good()
    with pytest.raises(ValueError, match=message):
        evaluate_case(bad, labels, SPACING)
    with pytest.raises(ValueError, match=message):
        calibration_voxels(bad, labels, SPACING)


def test_sum_tolerance_is_respected() -> None:
    probs, labels = _good()
    off = probs * (1 + 5e-4)  # within the default 1e-3
    assert evaluate_case(off, labels, SPACING).metrics.roi_voxels > 0
    with pytest.raises(ValueError, match=r"probs must sum to 1 over classes \(axis 0\) within 0.0001"):
        evaluate_case(off, labels, SPACING, settings=MetricSettings(sum_tolerance=1e-4))


# --- labels ----------------------------------------------------------------------------------------------------


def _bad_labels() -> list[tuple[str, Any, str]]:
    _, labels = _good()
    return [
        ("wrong shape", labels[:, :, :4], r"labels must have the spatial shape \(3, 4, 5\)"),
        ("transposed", labels.transpose(2, 1, 0), r"labels must have the spatial shape"),
        ("float dtype", labels.astype(np.float64), r"labels must have an integer dtype"),
        ("too large", np.where(labels == 2, 3, labels), r"labels must hold class indices 0..2"),
        ("negative", np.where(labels == 2, -1, labels), r"labels must hold class indices 0..2"),
        ("list", labels.tolist(), r"labels must be a numpy array"),
    ]


@pytest.mark.parametrize(
    ("bad", "message"), [(b, m) for _, b, m in _bad_labels()], ids=[i for i, _, _ in _bad_labels()]
)
def test_bad_labels(bad: Any, message: str) -> None:
    probs, _ = _good()
    with pytest.raises(ValueError, match=message):
        evaluate_case(probs, bad, SPACING)
    with pytest.raises(ValueError, match=message):
        calibration_voxels(probs, bad, SPACING)


# --- spacing, temperature, maps_budget, empty ROI ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spacing", "message"),
    [
        ((1.0, 1.0), r"spacing must have 3 values \(z, y, x\) in mm, got 2"),
        ((1.0, 1.0, 1.0, 1.0), r"spacing must have 3 values"),
        ((0.0, 1.0, 1.0), r"spacing values must be finite and > 0 mm"),
        ((1.0, -2.0, 1.0), r"spacing values must be finite and > 0 mm"),
        ((1.0, 1.0, float("nan")), r"spacing values must be finite and > 0 mm"),
        ((1.0, float("inf"), 1.0), r"spacing values must be finite and > 0 mm"),
    ],
    ids=["2 values", "4 values", "zero", "negative", "NaN", "inf"],
)
def test_bad_spacing(spacing: tuple[float, ...], message: str) -> None:
    probs, labels = _good()
    with pytest.raises(ValueError, match=message):
        evaluate_case(probs, labels, spacing)


@pytest.mark.parametrize("spacing", [2.0, None, "abc"], ids=["scalar", "None", "string"])
def test_spacing_that_is_not_three_numbers(spacing: Any) -> None:
    probs, labels = _good()
    with pytest.raises(ValueError, match=r"spacing must"):
        evaluate_case(probs, labels, spacing)


def test_spacing_may_be_any_sequence_of_three_numbers() -> None:
    probs, labels = _good()
    expected = evaluate_case(probs, labels, SPACING).metrics.to_dict()
    assert evaluate_case(probs, labels, np.array(SPACING)).metrics.to_dict() == expected
    assert evaluate_case(probs, labels, list(SPACING)).metrics.to_dict() == expected


@pytest.mark.parametrize("roi_mode", ["union", "pred", "gt"])
def test_empty_roi(roi_mode: str) -> None:
    """Nothing to grow the ROI from is a result (tests/metrics/test_empty_roi.py), not an error; the calibration
    voxels of such a case cannot be taken."""
    probs = np.zeros((2, 3, 4, 5))
    probs[0] = 0.9
    probs[1] = 0.1
    labels = np.zeros((3, 4, 5), dtype=np.int64)
    config = MetricSettings(roi_mode=roi_mode)  # type: ignore[arg-type]
    assert evaluate_case(probs, labels, SPACING, settings=config).metrics.roi_voxels == 0
    with pytest.raises(ValueError, match=rf"empty ROI: no foreground .*roi_mode='{roi_mode}'"):
        calibration_voxels(probs, labels, SPACING, settings=config)
    # The whole-volume ROI needs no foreground.
    whole = evaluate_case(probs, labels, SPACING, settings=MetricSettings(roi_mode="whole_volume"))
    assert whole.metrics.roi_voxels == 60


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(temperature: float) -> None:
    probs, labels = _good()
    with pytest.raises(ValueError, match=r"temperature must be finite and > 0"):
        evaluate_case(probs, labels, SPACING, temperature=temperature)


@pytest.mark.parametrize("budget", [-0.01, 1.01, float("nan")])
def test_bad_maps_budget(budget: float) -> None:
    probs, labels = _good()
    with pytest.raises(ValueError, match=r"maps_budget must be in \[0, 1\]"):
        evaluate_case(probs, labels, SPACING, maps_budget=budget)


@pytest.mark.parametrize("budget", [0.0, 1.0])
def test_maps_budget_bounds_are_accepted(budget: float) -> None:
    probs, labels = _good()
    result = evaluate_case(probs, labels, SPACING, maps_budget=budget)
    assert result.maps is not None
    assert int(result.maps.budget_mask.sum()) == (0 if budget == 0 else result.metrics.roi_voxels)


# --- MetricSettings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pooling", "median", r"MetricSettings.pooling must be one of \('prob_mean', 'logit_mean'\), got 'median'"),
        ("temperature_mode", "before", r"MetricSettings.temperature_mode must be one of"),
        ("roi_mode", "both", r"MetricSettings.roi_mode must be one of"),
        ("ece_mode", "binary", r"MetricSettings.ece_mode must be one of"),
        ("brier_mode", "bg", r"MetricSettings.brier_mode must be one of"),
        ("empty_error_policy", "nan", r"MetricSettings.empty_error_policy must be one of"),
        ("auc_mode", "pr", r"MetricSettings.auc_mode must be one of"),
        ("grid_mapping", "once", r"MetricSettings.grid_mapping must be one of \('pooled', 'per_pass'\)"),
        ("temperature_min", 0.0, r"MetricSettings.temperature_min and temperature_max"),
        ("temperature_max", 0.01, r"MetricSettings.temperature_min and temperature_max"),
        ("temperature_min", float("nan"), r"MetricSettings.temperature_min and temperature_max"),
        ("temperature_max_voxels", 0, r"MetricSettings.temperature_max_voxels must be >= 1"),
        ("roi_radius_mm", -1.0, r"MetricSettings.roi_radius_mm must be >= 0"),
        ("roi_radius_mm", float("nan"), r"MetricSettings.roi_radius_mm must be >= 0"),
        ("ece_bins", 0, r"MetricSettings.ece_bins must be >= 1"),
        ("budget_max", 0.0, r"MetricSettings.budget_max must be in \(0, 1\]"),
        ("budget_max", 1.5, r"MetricSettings.budget_max must be in \(0, 1\]"),
        ("budget_points", 1, r"MetricSettings.budget_points must be >= 2"),
        ("sum_tolerance", 0.0, r"MetricSettings.sum_tolerance must be in \(0, 1\)"),
        ("sum_tolerance", 1.0, r"MetricSettings.sum_tolerance must be in \(0, 1\)"),
    ],
)
def test_bad_settings(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MetricSettings(**{field: value})


def test_default_settings_follow_the_spec() -> None:
    config = MetricSettings()
    assert (config.roi_radius_mm, config.ece_bins, config.budget_max, config.budget_points) == (15.0, 15, 0.05, 51)
    assert (config.temperature_min, config.temperature_max, config.temperature_max_voxels) == (0.05, 20.0, 2_000_000)
    assert config.pooling == "prob_mean" and config.temperature_mode == "after_pooling" and config.roi_mode == "union"
    assert config.grid_mapping == "pooled"
    fractions = config.budget_fractions()
    assert len(fractions) == 51 and fractions[0] == 0 and fractions[-1] * 20 == 1 and fractions[1] * 1000 == 1


# --- fit_temperature -------------------------------------------------------------------------------------------


def _calibration() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    rng = np.random.default_rng(1)
    return rng.dirichlet(np.ones(3), size=50).T.copy(), rng.integers(0, 3, 50)


PER_MEMBER = MetricSettings(temperature_mode="per_member")


@pytest.mark.parametrize(
    ("make", "config", "message"),
    [
        (lambda p, y: (p[None], y), MetricSettings(), r"scores must be \(C, n\) pooled probabilities"),
        (lambda p, y: (p[0], y), MetricSettings(), r"scores must be \(C, n\) pooled probabilities"),
        (lambda p, y: (p, y), PER_MEMBER, r"scores must be \(K, C, n\) member logits"),
        (lambda p, y: (p, y[:-1]), MetricSettings(), r"labels must be shaped \(50,\) to match scores"),
        (lambda p, y: (p, y[:, None]), MetricSettings(), r"labels must be shaped \(50,\)"),
        (lambda p, y: (p[:, :0], y[:0]), MetricSettings(), r"scores holds no calibration voxel"),
        (lambda p, y: (p[None, :, :0], y[:0]), PER_MEMBER, r"scores holds no calibration voxel"),
        (lambda p, y: (p, np.where(y == 2, 3, y)), MetricSettings(), r"labels must hold class indices 0..2"),
        (lambda p, y: (p, np.where(y == 2, -1, y)), MetricSettings(), r"labels must hold class indices 0..2"),
        (lambda p, y: (p, y + 0.5), MetricSettings(), r"labels must have an integer dtype"),
        (lambda p, y: (_with(p, (0, 3), np.nan), y), MetricSettings(), r"scores must be finite"),
        (lambda p, y: (_with(p, (1, 3), np.inf), y), MetricSettings(), r"scores must be finite"),
        (lambda p, y: (_with(p, (0, 3), -0.5), y), MetricSettings(), r"scores must be probabilities \(>= 0\)"),
    ],
    ids=[
        "3-d pooled",
        "1-d pooled",
        "2-d per member",
        "labels short",
        "labels 2-d",
        "empty",
        "empty per member",
        "label too large",
        "label negative",
        "labels float",
        "NaN",
        "inf",
        "negative probability",
    ],
)
def test_bad_fit_temperature_input(
    make: Callable[[NDArray[np.float64], NDArray[np.int64]], tuple[NDArray[np.float64], NDArray[np.int64]]],
    config: MetricSettings,
    message: str,
) -> None:
    scores, labels = make(*_calibration())
    with pytest.raises(ValueError, match=message):
        fit_temperature(scores, labels, config)


# --- cohort ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [([1.0, 2.0, 3.0], [1.0, 2.0]), ([[1.0, 2.0]], [[1.0, 2.0]]), ([1.0], [[1.0]])],
    ids=["lengths", "2-d", "shapes"],
)
def test_paired_comparison_rejects_mismatched_inputs(a: Any, b: Any) -> None:
    with pytest.raises(ValueError, match=r"a and b must be 1-D of equal length"):
        paired_comparison(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"confidence": 1.0}, r"confidence must be in \(0, 1\)"), ({"n_bootstrap": 0}, r"n_bootstrap must be >= 1")],
)
def test_paired_comparison_rejects_bad_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_comparison([1.0, 2.0], [0.5, 1.0], **kwargs)


def test_summarise_repeats_names_the_missing_columns() -> None:
    cases = pd.DataFrame({"configuration": ["A"], "repeat": [0], "dsc": [0.8]})
    with pytest.raises(ValueError, match=r"cases lacks the columns \['ece'\]"):
        summarise_repeats(cases, ["dsc", "ece"])
    with pytest.raises(ValueError, match=r"cases lacks the columns \['split'\]"):
        summarise_repeats(cases, ["dsc"], repeat="split")
    with pytest.raises(ValueError, match=r"cases lacks the columns \['structure'\]"):
        summarise_repeats(cases, ["dsc"], by=("configuration", "structure"))
