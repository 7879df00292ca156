"""Per-structure (classwise) ECE, Brier, UEO-AUC and FP-TP / FN-TN AUC of the suite agree with oracles written here
from ``docs/metrics.md``: the structure ROI R_c from SciPy's full-volume ``distance_transform_edt`` with the voxel
spacing, scikit-learn's ``brier_score_loss`` and ``roc_auc_score``, torchmetrics' ``binary_calibration_error``, a
plain-NumPy binned ECE and a brute-force UEO loop; random and structured cases with two or three structures, every
ROI mode, with and without temperature scaling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from sklearn.metrics import brier_score_loss, roc_auc_score
from torchmetrics.functional.classification import binary_calibration_error

from pipeline.metrics.results import CaseMetrics
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.suite import evaluate_case
from tests.metrics.cases import (
    BUDGET_FRACTIONS,
    Case,
    argmax64,
    budget_count,
    ece_oracle,
    entropy_oracle,
    random_case,
    roi_oracle,
    structured_case,
    temperature_oracle,
)

CASES = {
    "random-C3": random_case(1, n_classes=3),
    "structured-C3-s1": structured_case(1, n_classes=3),
    "structured-C3-s2": structured_case(2, n_classes=3, n_structures=4),
    "structured-C4-s3": structured_case(3, n_classes=4),
}
FIELDS = ("ece_structure", "brier_structure", "ueo_auc_structure", "fp_tp_auc_structure", "fn_tn_auc_structure")


def _structure_roi(case: Case, c: int, mode: str, radius: float) -> NDArray[np.bool_] | None:
    """R_c the obvious way: the full-volume Euclidean distance (mm) to c's seed <= radius; None for an empty seed."""
    if mode == "whole_volume":
        return np.ones(case.labels.shape, dtype=bool)
    predicted, reference = argmax64(case.probs) == c, case.labels == c
    seed = {"union": predicted | reference, "pred": predicted, "gt": reference}[mode]
    return roi_oracle(seed, case.spacing, radius) if seed.any() else None


def _ueo_auc(entropy: NDArray[np.float64], errors: NDArray[np.bool_], exclude_if_no_error: bool) -> float:
    """Mean UEO over the budget grid: top ceil(b·n) by entropy, ties in raster order, trapezoids over 0–5 %."""
    n, n_errors = entropy.size, int(np.count_nonzero(errors))
    if n_errors == 0 and exclude_if_no_error:
        return math.nan
    order = np.lexsort((np.arange(n), -entropy))
    ueo = []
    for budget in BUDGET_FRACTIONS:
        k = budget_count(budget, n)
        ueo.append(0.0 if k == 0 else 2 * int(np.count_nonzero(errors[order[:k]])) / (k + n_errors))
    return sum((ueo[i] + ueo[i + 1]) / 2 for i in range(len(ueo) - 1)) / (len(ueo) - 1)


def _auc(positive: NDArray[np.bool_], entropy: NDArray[np.float64]) -> float:
    return math.nan if positive.all() or not positive.any() else float(roc_auc_score(positive, entropy))


def _oracle(case: Case, settings: MetricSettings, temperature: float | None) -> NDArray[np.float64]:
    """Rows ECE_c, Brier_c, UEO-AUC_c, FP-TP AUC_c, FN-TN AUC_c; one column per class (background NaN)."""
    p_cal = case.probs if temperature is None else temperature_oracle(case.probs, temperature)
    entropy = entropy_oracle(p_cal)
    prediction = argmax64(case.probs)
    expected = np.full((5, case.n_classes), math.nan)
    for c in range(1, case.n_classes):
        roi = _structure_roi(case, c, settings.roi_mode, settings.roi_radius_mm)
        if roi is None:
            continue
        confidence, truth, predicted = p_cal[c][roi], case.labels[roi] == c, prediction[roi] == c
        errors = predicted != truth
        expected[:, c] = (
            ece_oracle(confidence, truth, settings.ece_bins),
            brier_score_loss(truth, confidence),
            _ueo_auc(entropy[roi], errors, settings.empty_error_policy == "exclude"),
            _auc(~truth[predicted], entropy[roi][predicted]),
            _auc(truth[~predicted], entropy[roi][~predicted]),
        )
    return expected


def _engine(metrics: CaseMetrics) -> NDArray[np.float64]:
    return np.array([getattr(metrics, name) for name in FIELDS], dtype=np.float64)


@pytest.mark.parametrize("roi_mode", ["union", "pred", "gt", "whole_volume"])
@pytest.mark.parametrize("name", list(CASES))
def test_structure_metrics_match_the_oracles_in_every_roi_mode(name: str, roi_mode: str) -> None:
    case = CASES[name]
    settings = MetricSettings(roi_mode=roi_mode)
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings).metrics
    expected = _oracle(case, settings, None)
    assert all(len(getattr(metrics, f)) == case.n_classes for f in FIELDS)
    assert np.isnan(_engine(metrics)[:, 0]).all(), "the background has no structure value"
    assert not np.isnan(expected[:3, 1:]).any(), "every structure of these cases has a seed and errors"
    np.testing.assert_allclose(_engine(metrics), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("radius", "temperature"), [(4.0, 0.7), (0.0, None), (25.0, 1.8)])
@pytest.mark.parametrize("name", ["structured-C3-s1", "structured-C4-s3"])
def test_structure_metrics_follow_radius_and_temperature(name: str, radius: float, temperature: float | None) -> None:
    case = CASES[name]
    settings = MetricSettings(roi_radius_mm=radius, ece_bins=10, empty_error_policy="zero")
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings, temperature=temperature).metrics
    np.testing.assert_allclose(_engine(metrics), _oracle(case, settings, temperature), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["random-C3", "structured-C3-s2"])
def test_structure_ece_matches_torchmetrics(name: str) -> None:
    case = CASES[name]
    metrics = evaluate_case(case.probs, case.labels, case.spacing).metrics
    for c in range(1, case.n_classes):
        roi = _structure_roi(case, c, "union", 15.0)
        assert roi is not None
        peer = binary_calibration_error(torch.from_numpy(case.probs[c][roi]), torch.from_numpy(case.labels[roi] == c),
                                        n_bins=15, norm="l1")
        assert metrics.ece_structure[c] == pytest.approx(float(peer), abs=1e-5)


def test_capture_mode_gives_the_structures_error_capture_areas() -> None:
    case = CASES["structured-C3-s1"]
    settings = MetricSettings(auc_mode="capture")
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings).metrics
    entropy, prediction = entropy_oracle(case.probs), argmax64(case.probs)
    for c in (1, 2):
        roi = _structure_roi(case, c, "union", 15.0)
        assert roi is not None
        for side, value in ((prediction[roi] == c, metrics.fp_tp_auc_structure[c]),
                            (prediction[roi] != c, metrics.fn_tn_auc_structure[c])):
            positive = ((prediction[roi] == c) != (case.labels[roi] == c))[side]
            order = np.lexsort((np.arange(positive.size), -entropy[roi][side]))
            recall = [np.count_nonzero(positive[order[:budget_count(b, positive.size)]]) / np.count_nonzero(positive)
                      for b in BUDGET_FRACTIONS]
            area = float(np.mean([(a + b) / 2 for a, b in itertools.pairwise(recall)]))
            assert value == pytest.approx(area, abs=1e-9)


def test_an_empty_seed_leaves_a_structure_undefined() -> None:
    base = CASES["structured-C3-s1"]
    probs = base.probs.copy()
    probs[2] = 1e-9
    probs /= probs.sum(axis=0, keepdims=True)
    labels = base.labels.copy()
    labels[labels == 2] = 0
    labels[5, 20:23, 20:23] = 2  # a reference-only structure: never predicted
    case = Case(probs, labels, base.spacing)
    assert not (argmax64(probs) == 2).any()
    for mode in ("union", "pred", "gt"):
        settings = MetricSettings(roi_mode=mode)
        metrics = evaluate_case(probs, labels, base.spacing, settings).metrics
        np.testing.assert_allclose(_engine(metrics), _oracle(case, settings, None), rtol=0, atol=1e-9)
        undefined = np.isnan(_engine(metrics)[:, 2])
        assert undefined.all() == (mode == "pred"), mode
        if mode != "pred":
            assert undefined.tolist() == [False, False, False, True, False], "no voxel predicted 2: no FP-TP pair"
    assert evaluate_case(probs, labels, base.spacing).metrics.to_dict()["ece_structure"]["0"] is None
