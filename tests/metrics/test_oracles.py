"""The metric engine agrees with independent implementations (scikit-learn, torchmetrics, MedPy, SciPy, explicit
loops) on the same voxels, for unstructured random cases and for structured cases (ellipsoids + smooth logits)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from medpy.metric.binary import dc as medpy_dc
from numpy.typing import NDArray
from scipy import ndimage
from sklearn.metrics import brier_score_loss, roc_auc_score
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from pipeline.metrics.budget import auroc, ueo_curve
from pipeline.metrics.calibration import brier_score, expected_calibration_error, reliability_bins
from pipeline.metrics.overlap import dice_per_class
from pipeline.metrics.results import CaseMetrics
from pipeline.metrics.review_budget import descending_order
from pipeline.metrics.roi import dilate_mm
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
    top_label,
    union_roi_oracle,
)

TOL = 1e-6


def _cases() -> list[tuple[str, Case]]:
    cases = [(f"random-C{c}-s{s}", random_case(s, n_classes=c)) for s, c in ((0, 2), (1, 3), (2, 4))]
    cases += [(f"structured-C{c}-s{s}", structured_case(s, n_classes=c)) for s, c in ((0, 2), (1, 3), (2, 3), (3, 4))]
    return cases


CASES = _cases()
CASE_IDS = [name for name, _ in CASES]
CASE_VALUES = [case for _, case in CASES]


def _roi_voxels(case: Case) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
    """Probabilities (C, |R|), labels (|R|,) at the independently computed ROI (raster order), and the ROI mask."""
    roi = union_roi_oracle(case)
    return case.probs[:, roi], case.labels[roi], roi


# --- ECE -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_ece_matches_loop_reference_on_all_voxels(case: Case) -> None:
    confidence, correct = top_label(case.probs.reshape(case.n_classes, -1), case.labels.ravel())
    assert expected_calibration_error(confidence, correct, 15) == pytest.approx(
        ece_oracle(confidence, correct, 15), abs=TOL
    )


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_suite_roi_ece_matches_loop_reference(case: Case) -> None:
    probs, labels, roi = _roi_voxels(case)
    confidence, correct = top_label(probs, labels)
    metrics = evaluate_case(case.probs, case.labels, case.spacing).metrics
    assert metrics.roi_voxels == int(np.count_nonzero(roi))
    assert metrics.ece == pytest.approx(ece_oracle(confidence, correct, 15), abs=TOL)
    assert int(metrics.reliability.count.sum()) == labels.size
    assert int(metrics.reliability.sum_correct.sum()) == int(np.count_nonzero(correct))


@pytest.mark.parametrize("n_bins", [5, 10, 12, 15, 20, 30])
def test_ece_bins_are_right_closed_at_exact_edges(n_bins: int) -> None:
    # A confidence equal to (the double nearest to) m/M belongs to bin m-1 = ((m-1)/M, m/M]; 0 belongs to bin 0.
    edges = np.array([m / n_bins for m in range(n_bins + 1)])
    bins = reliability_bins(edges, np.ones(edges.size, dtype=bool), n_bins)
    expected = np.ones(n_bins, dtype=np.int64)
    expected[0] = 2  # 0 and 1/M
    assert bins.count[0].tolist() == expected.tolist()
    rng = np.random.default_rng(n_bins)
    correct = rng.random(edges.size) < 0.5
    assert expected_calibration_error(edges, correct, n_bins) == pytest.approx(
        ece_oracle(edges, correct, n_bins), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(4))
def test_ece_matches_torchmetrics_multiclass(seed: int) -> None:
    # torchmetrics bins are [a, b) (torch.bucketize(right=True)) where ours are (a, b]; with continuous random
    # confidences no value lies on an edge, so both binnings coincide. torchmetrics works in float32.
    rng = np.random.default_rng(seed)
    n_classes = 2 + seed % 3
    probs = rng.dirichlet(np.full(n_classes, 0.4), size=3000)  # (n, C)
    labels = np.array([rng.choice(n_classes, p=p) for p in probs[:, ::-1]])  # deliberately miscalibrated
    confidence, correct = top_label(probs.T, labels)
    ours = expected_calibration_error(confidence, correct, 15)
    theirs = float(
        multiclass_calibration_error(
            torch.from_numpy(probs), torch.from_numpy(labels), num_classes=n_classes, n_bins=15, norm="l1"
        )
    )
    assert ours == pytest.approx(theirs, abs=TOL)
    assert ours == pytest.approx(ece_oracle(confidence, correct, 15), abs=1e-12)


def test_ece_is_exact_with_more_than_2_pow_24_voxels_in_one_bin() -> None:
    # Float32 accumulation cannot count past 2**24 (x + 1 == x); per-bin sums must be exact integers / float64.
    n = 2**24 + 2**22
    rng = np.random.default_rng(2024)
    confidence = np.float32(0.9) + np.float32(0.03) * rng.random(n, dtype=np.float32)
    correct = rng.random(n, dtype=np.float32) < np.float32(0.8)
    # Exact reference: every float32 in [0.5, 1) is an integer multiple of 2**-24, so Σconf is an exact integer sum.
    ticks = confidence.astype(np.float64) * 2**24
    assert np.array_equal(ticks, np.floor(ticks))
    assert float(confidence.min()) > 13 / 15 and float(confidence.max()) <= 14 / 15  # all in bin 13
    sum_ticks = int(ticks.astype(np.int64).sum())
    n_correct = int(np.count_nonzero(correct))
    exact = float(Fraction(abs(n_correct * 2**24 - sum_ticks), n * 2**24))
    del ticks

    bins = reliability_bins(confidence, correct, 15)
    ours = expected_calibration_error(confidence, correct, 15)
    theirs = float(
        binary_calibration_error(
            torch.from_numpy(confidence), torch.from_numpy(correct), n_bins=15, norm="l1", validate_args=False
        )
    )
    assert int(bins.count[0, 13]) == n
    assert int(bins.sum_correct[0, 13]) == n_correct
    assert abs(ours - exact) <= 1e-9, (
        f"ECE {ours!r} vs exact {exact!r} (diff {ours - exact:.3e}); "
        f"for the record torchmetrics binary_calibration_error deviates by {theirs - exact:.3e}"
    )


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_suite_foreground_and_classwise_ece_and_foreground_brier(case: Case) -> None:
    probs, labels, _ = _roi_voxels(case)
    foreground_probability = probs[1:].sum(axis=0)
    foreground = evaluate_case(case.probs, case.labels, case.spacing, settings=MetricSettings(ece_mode="foreground"))
    assert foreground.metrics.ece == pytest.approx(ece_oracle(foreground_probability, labels > 0), abs=TOL)
    # torchmetrics' binary calibration error is exactly this variant: confidence P(fg), accuracy [g > 0].
    binary = binary_calibration_error(
        torch.from_numpy(foreground_probability), torch.from_numpy((labels > 0).astype(np.int64)), n_bins=15
    )
    assert foreground.metrics.ece == pytest.approx(float(binary), abs=TOL)
    classwise = evaluate_case(case.probs, case.labels, case.spacing, settings=MetricSettings(ece_mode="classwise"))
    per_class = [ece_oracle(probs[c], labels == c) for c in range(case.n_classes)]
    assert classwise.metrics.ece == pytest.approx(float(np.mean(per_class)), abs=TOL)
    assert classwise.metrics.reliability.count.shape == (case.n_classes, 15)
    brier_fg = evaluate_case(case.probs, case.labels, case.spacing, settings=MetricSettings(brier_mode="foreground"))
    one_hot = labels[None, :] == np.arange(case.n_classes)[:, None]
    expected = float(np.mean(np.sum((probs[1:] - one_hot[1:]) ** 2, axis=0)))
    assert brier_fg.metrics.brier == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize(
    ("roi_mode", "radius"),
    [("union", 5.0), ("union", 0.0), ("pred", 15.0), ("gt", 15.0), ("gt", 7.5), ("whole_volume", 15.0)],
)
@pytest.mark.parametrize("case", CASE_VALUES[3:5], ids=CASE_IDS[3:5])
def test_suite_roi_modes_and_radius(case: Case, roi_mode: str, radius: float) -> None:
    prediction = argmax64(case.probs)
    seeds = {
        "union": (prediction > 0) | (case.labels > 0),
        "pred": prediction > 0,
        "gt": case.labels > 0,
        "whole_volume": np.ones(case.labels.shape, dtype=bool),
    }
    roi = roi_oracle(seeds[roi_mode], case.spacing, radius)
    config = MetricSettings(roi_mode=roi_mode, roi_radius_mm=radius)  # type: ignore[arg-type]
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings=config).metrics
    assert metrics.roi_voxels == int(np.count_nonzero(roi))
    expected = brier_score_loss(
        case.labels[roi], case.probs[:, roi].T, labels=list(range(case.n_classes)), scale_by_half=False
    )
    assert metrics.brier == pytest.approx(expected, abs=TOL)
    assert metrics.error_voxels == int(np.count_nonzero((prediction != case.labels) & roi))


# --- Brier -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_brier_matches_sklearn(case: Case) -> None:
    probs = case.probs.reshape(case.n_classes, -1)
    labels = case.labels.ravel()
    expected = brier_score_loss(labels, probs.T, labels=list(range(case.n_classes)), scale_by_half=False)
    assert brier_score(probs, labels) == pytest.approx(expected, abs=TOL)
    assert brier_score(probs.astype(np.float32), labels) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_suite_roi_brier_matches_sklearn(case: Case) -> None:
    probs, labels, _ = _roi_voxels(case)
    expected = brier_score_loss(labels, probs.T, labels=list(range(case.n_classes)), scale_by_half=False)
    for dtype in (np.float64, np.float32):
        metrics = evaluate_case(case.probs.astype(dtype), case.labels, case.spacing).metrics
        assert metrics.brier == pytest.approx(expected, abs=TOL)


# --- AUROC -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_continuous(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positive = rng.random(500) < 0.3
    scores = rng.normal(size=500) + positive * 0.7
    assert auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=80).filter(
        lambda d: any(p for _, p in d) and not all(p for _, p in d)
    )
)
def test_auroc_matches_sklearn_with_heavy_ties(data: list[tuple[int, bool]]) -> None:
    scores = np.array([s / 4 for s, _ in data])  # 5 quantised levels: ties everywhere
    positive = np.array([p for _, p in data])
    assert auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


def test_auroc_is_nan_when_a_class_is_missing() -> None:
    scores = np.linspace(0, 1, 10)
    assert math.isnan(auroc(scores, np.zeros(10, dtype=bool)))
    assert math.isnan(auroc(scores, np.ones(10, dtype=bool)))


def _side_auc(errors: NDArray[np.bool_], entropy: NDArray[np.float64]) -> float:
    if errors.all() or not errors.any():
        return math.nan
    return float(roc_auc_score(errors, entropy))


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_suite_fp_tp_and_fn_tn_auc_match_sklearn(case: Case) -> None:
    probs, labels, _ = _roi_voxels(case)
    prediction = np.argmax(probs, axis=0)
    errors = prediction != labels
    entropy = entropy_oracle(probs)
    foreground = prediction > 0
    metrics = evaluate_case(case.probs, case.labels, case.spacing).metrics
    expected_fp_tp = _side_auc(errors[foreground], entropy[foreground])
    expected_fn_tn = _side_auc(errors[~foreground], entropy[~foreground])
    assert metrics.fp_tp_auc == pytest.approx(expected_fp_tp, abs=TOL, nan_ok=True)
    assert metrics.fn_tn_auc == pytest.approx(expected_fn_tn, abs=TOL, nan_ok=True)
    assert metrics.mean_entropy_roi == pytest.approx(float(entropy.mean()), abs=TOL)


# --- DSC -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_dsc_matches_medpy_per_class(case: Case) -> None:
    prediction = argmax64(case.probs)
    expected = [medpy_dc(prediction == c, case.labels == c) for c in range(case.n_classes)]
    np.testing.assert_allclose(dice_per_class(prediction, case.labels, case.n_classes), expected, rtol=0, atol=1e-12)
    metrics = evaluate_case(case.probs, case.labels, case.spacing).metrics
    np.testing.assert_allclose(metrics.dsc, expected, rtol=0, atol=1e-12)
    assert metrics.dsc_mean_fg == pytest.approx(float(np.mean(expected[1:])), abs=1e-12)


def test_dsc_is_one_when_both_sets_are_empty() -> None:
    # Spec: DSC = 1 when both prediction and reference are empty (class 2 is absent from both here).
    prediction = np.array([[[0, 1, 1, 0]]])
    reference = np.array([[[0, 1, 0, 0]]])
    dsc = dice_per_class(prediction, reference, 3)
    assert dsc[2] == 1.0
    assert dsc[1] == pytest.approx(2 * 1 / (2 + 1))
    assert dsc[0] == pytest.approx(2 * 2 / (2 + 3))
    # MedPy 0.5.2 differs here: NumPy integer counts make 0/0 a NaN (with a RuntimeWarning), not its documented
    # ZeroDivisionError -> 1.0 branch. The spec, not MedPy, is the reference for this case.
    with pytest.warns(RuntimeWarning):
        assert math.isnan(medpy_dc(prediction == 2, reference == 2))
    # And through the suite: a 3-class case whose class 2 is neither predicted nor present.
    probs = np.zeros((3, 1, 1, 4))
    probs[0] = [[[0.9, 0.2, 0.3, 0.8]]]
    probs[1] = 1.0 - probs[0] - 0.05
    probs[2] = 0.05
    literal = evaluate_case(probs, reference, (1.0, 1.0, 1.0), MetricSettings(empty_structure_policy="one")).metrics
    assert literal.dsc[2] == 1.0 and literal.dsc_mean_fg == pytest.approx((2 / 3 + 1) / 2)
    assert literal.dsc[1] == pytest.approx(2 / 3)
    # The default leaves the absent structure undefined and out of the foreground mean (it cannot lift it).
    default = evaluate_case(probs, reference, (1.0, 1.0, 1.0)).metrics
    assert math.isnan(default.dsc[2]) and default.dsc[1] == literal.dsc[1]
    assert default.dsc_mean_fg == pytest.approx(2 / 3)
    assert default.to_dict()["dsc"]["2"] is None


# --- UEO curve -------------------------------------------------------------------------------------------------


def _brute_force_curve(
    entropy: NDArray[np.float64], errors: NDArray[np.bool_], voxel_ml: float
) -> dict[str, NDArray[np.float64]]:
    n = entropy.size
    order = np.lexsort((np.arange(n), -entropy))  # primary: entropy descending; ties: raster order
    n_errors = int(np.count_nonzero(errors))
    ueo, recall, precision, flagged_ml = [], [], [], []
    for budget in BUDGET_FRACTIONS:
        k = budget_count(budget, n)
        hits = int(np.count_nonzero(errors[order[:k]]))
        ueo.append(0.0 if k == 0 else 2 * hits / (k + n_errors))
        recall.append(hits / n_errors if n_errors else math.nan)
        precision.append(hits / k if k else math.nan)
        flagged_ml.append(k * voxel_ml)
    area = sum((ueo[i] + ueo[i + 1]) / 2 * 0.001 for i in range(50)) / 0.05
    return {
        "ueo": np.array(ueo),
        "recall": np.array(recall),
        "precision": np.array(precision),
        "flagged_ml": np.array(flagged_ml),
        "area": np.array(area),
    }


def _assert_curve(metrics: CaseMetrics, expected: dict[str, NDArray[np.float64]]) -> None:
    np.testing.assert_allclose(metrics.curve.budgets, [float(b) for b in BUDGET_FRACTIONS], rtol=0, atol=0)
    for key in ("ueo", "recall", "precision", "flagged_ml"):
        np.testing.assert_allclose(getattr(metrics.curve, key), expected[key], rtol=0, atol=1e-9, err_msg=key)
    assert metrics.ueo_auc == pytest.approx(float(expected["area"]), abs=1e-9)


@pytest.mark.parametrize("case", CASE_VALUES, ids=CASE_IDS)
def test_suite_ueo_curve_matches_brute_force(case: Case) -> None:
    probs, labels, _ = _roi_voxels(case)
    errors = np.argmax(probs, axis=0) != labels
    voxel_ml = case.spacing[0] * case.spacing[1] * case.spacing[2] / 1000
    metrics = evaluate_case(case.probs, case.labels, case.spacing).metrics
    assert metrics.error_voxels == int(np.count_nonzero(errors))
    _assert_curve(metrics, _brute_force_curve(entropy_oracle(probs), errors, voxel_ml))


@settings(max_examples=60, deadline=None)
@given(
    levels=st.lists(st.integers(0, 3), min_size=1, max_size=300),
    error_seed=st.integers(0, 2**32 - 1),
    error_rate=st.floats(0.0, 1.0),
)
def test_ueo_curve_matches_brute_force_with_tied_scores(levels: list[int], error_seed: int, error_rate: float) -> None:
    scores = np.array(levels, dtype=np.float64) / 3
    errors = np.random.default_rng(error_seed).random(scores.size) < error_rate
    curve = ueo_curve(descending_order(scores), errors, BUDGET_FRACTIONS, voxel_ml=0.5)
    expected = _brute_force_curve(scores, errors, 0.5)
    for key in ("ueo", "recall", "precision", "flagged_ml"):
        np.testing.assert_allclose(getattr(curve, key), expected[key], rtol=0, atol=1e-12, err_msg=key)
    assert curve.area() == pytest.approx(float(expected["area"]), abs=1e-12)


# --- Temperature -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.7, 3.0])
@pytest.mark.parametrize("case", CASE_VALUES[::2], ids=CASE_IDS[::2])
def test_temperature_equals_independently_rescaled_input(case: Case, temperature: float) -> None:
    scaled = evaluate_case(case.probs, case.labels, case.spacing, temperature=temperature).metrics
    rescaled = temperature_oracle(case.probs, temperature)
    reference = evaluate_case(rescaled, case.labels, case.spacing).metrics
    assert scaled.temperature == temperature
    assert scaled.dsc == reference.dsc
    assert scaled.roi_voxels == reference.roi_voxels
    assert scaled.error_voxels == reference.error_voxels
    for name in ("ece", "brier", "nll", "mean_entropy_roi", "ueo_auc", "fp_tp_auc", "fn_tn_auc"):
        assert getattr(scaled, name) == pytest.approx(getattr(reference, name), abs=TOL, nan_ok=True), name
    np.testing.assert_allclose(scaled.curve.ueo, reference.curve.ueo, rtol=0, atol=TOL)
    # And against the oracles directly, on the independent ROI.
    probs, labels, _ = _roi_voxels(Case(rescaled, case.labels, case.spacing))
    confidence, correct = top_label(probs, labels)
    assert scaled.ece == pytest.approx(ece_oracle(confidence, correct), abs=TOL)
    assert scaled.brier == pytest.approx(
        brier_score_loss(labels, probs.T, labels=list(range(case.n_classes)), scale_by_half=False), abs=TOL
    )
    assert scaled.mean_entropy_roi == pytest.approx(float(entropy_oracle(probs).mean()), abs=TOL)


# --- Real data, real anisotropic spacing -----------------------------------------------------------------------


def _read_spleen(shared_data: Path) -> tuple[NDArray[np.bool_], tuple[float, float, float]]:
    image = sitk.ReadImage(str(shared_data / "totalsegmentator" / "example_seg_dicom.nii.gz"))
    labels = sitk.GetArrayFromImage(image)  # (z, y, x)
    x, y, z = image.GetSpacing()  # SimpleITK spacing is (x, y, z)
    return labels == 1, (float(z), float(y), float(x))


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one:UserWarning")  # float32 1-p, p: 1 ± 6e-8
def test_roi_on_real_ct_matches_full_volume_edt(shared_data: Path) -> None:
    spleen, spacing = _read_spleen(shared_data)
    assert spacing[0] != spacing[1]  # the point of this file: anisotropic voxels (2 mm slices, ~0.98 mm pixels)
    assert spleen.any()
    expected = roi_oracle(spleen, spacing, 15.0)
    roi = dilate_mm(spleen, spacing, 15.0)
    assert np.array_equal(roi.dense(), expected)
    assert roi.n_voxels == int(np.count_nonzero(expected))
    # The same ROI with the axes read in the wrong order would differ: the check is sensitive to the spacing.
    assert not np.array_equal(roi_oracle(spleen, spacing[::-1], 15.0), expected)

    # A probability map built from the smoothed mask, evaluated by the suite against the mask as reference.
    rng = np.random.default_rng(7)
    smooth = ndimage.gaussian_filter(spleen.astype(np.float32), sigma=(0.5, 2.0, 2.0))
    logit = 10.0 * (smooth - 0.5) + rng.normal(scale=0.5, size=smooth.shape).astype(np.float32)
    p1 = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    probs = np.stack([1.0 - p1, p1])
    labels = spleen.astype(np.uint8)
    case_roi = roi_oracle((p1 > 0.5) | spleen, spacing, 15.0)
    metrics = evaluate_case(probs, labels, spacing).metrics
    assert metrics.roi_voxels == int(np.count_nonzero(case_roi))
    roi_probs = probs[:, case_roi].astype(np.float64)
    roi_labels = labels[case_roi].astype(np.int64)
    assert metrics.brier == pytest.approx(
        brier_score_loss(roi_labels, roi_probs.T, labels=[0, 1], scale_by_half=False), abs=TOL
    )
    confidence, correct = top_label(roi_probs, roi_labels)
    assert metrics.ece == pytest.approx(ece_oracle(confidence, correct), abs=TOL)
    assert metrics.voxel_ml == pytest.approx(spacing[0] * spacing[1] * spacing[2] / 1000)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_classes=st.integers(2, 4))
def test_suite_matches_oracles_on_random_structured_cases(seed: int, n_classes: int) -> None:
    case = structured_case(seed, n_classes=n_classes, shape=(8, 24, 24), n_structures=2)
    probs, labels, _ = _roi_voxels(case)
    confidence, correct = top_label(probs, labels)
    metrics = evaluate_case(case.probs, case.labels, case.spacing, settings=MetricSettings()).metrics
    assert metrics.ece == pytest.approx(ece_oracle(confidence, correct), abs=TOL)
    assert metrics.brier == pytest.approx(
        brier_score_loss(labels, probs.T, labels=list(range(n_classes)), scale_by_half=False), abs=TOL
    )
