"""One entry point computing every per-case metric of the spec for one configuration, sharing the work.

Cost: one chunked pass over the probability map (each z-chunk stays in cache) validates it and builds the ROI seed
(plus the prediction and entropy maps when asked for); the compiled distance kernel grows the ROI; everything else
runs on the ROI voxels only: one argmax, one temperature application, one entropy, and one stable ranking shared
by the UEO curve, both AUCs and the budget mask. The per-structure numbers reuse them: each structure's ROI R_c lies
inside R, so it grows inside R's box and is a mask over R's voxels; a subset of the ranking, taken in order, ranks
R_c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.budget import BudgetCurve, capture_area, ueo_curve
from pipeline.metrics.calibration import (
    ReliabilityBins,
    brier_score,
    normalized_entropy,
    reliability_bins,
    stack_bins,
)
from pipeline.metrics.kernels import (
    SEED_PREDICTION,
    SEED_REFERENCE,
    SEED_UNION,
    ranked_auroc_pair,
    scan_volume,
)
from pipeline.metrics.overlap import confusion_counts, dice_from_confusion
from pipeline.metrics.results import CaseMaps, CaseMetrics, CaseResult
from pipeline.metrics.review_budget import descending_order, flagged_count
from pipeline.metrics.roi import Roi, dilate_mm, whole_volume
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings
from pipeline.metrics.temperature import apply_temperature, log_probabilities
from pipeline.metrics.validation import check_labels, check_probability_chunk, check_probability_shape, check_spacing

_CHUNK_VOXELS = 1 << 17


def argmax_classes(probs: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Index of the largest class probability over axis 0 of ``probs`` (C, ...) as uint8; first class on ties."""
    if probs.shape[0] > 255:
        raise ValueError(f"at most 255 classes are supported, got {probs.shape[0]}")
    best = probs[0].copy()
    index = np.zeros(best.shape, dtype=np.uint8)
    larger = np.empty(best.shape, dtype=bool)
    for c in range(1, probs.shape[0]):
        np.greater(probs[c], best, out=larger)
        np.copyto(index, np.uint8(c), where=larger)
        np.maximum(best, probs[c], out=best)
    return index


@dataclass
class _Scan:
    """What the pass over the volume yields."""

    seed: NDArray[np.bool_]
    prediction_counts: NDArray[np.int64]
    reference_counts: NDArray[np.int64]
    prediction: NDArray[np.uint8] | None
    entropy: NDArray[np.float32] | None


_SEED_RULES = {"union": SEED_UNION, "pred": SEED_PREDICTION, "gt": SEED_REFERENCE, "whole_volume": SEED_PREDICTION}


def _scan(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    settings: MetricSettings,
    temperature: float | None,
    with_maps: bool,
) -> _Scan:
    """Validate ``probs`` and build the ROI seed and class counts in one compiled pass; maps when asked for."""
    seed, prediction, prediction_counts, reference_counts, (where, _) = scan_volume(
        probs, labels.view(np.uint8) if labels.dtype == np.bool_ else labels,
        _SEED_RULES[settings.roi_mode], settings.sum_tolerance, with_maps,
    )
    if where >= 0:
        check_probability_chunk(probs[:, where : where + 1], settings.sum_tolerance, where)
    entropy = None
    if with_maps:
        entropy = np.empty(probs.shape[1:], dtype=np.float32)
        step = max(1, _CHUNK_VOXELS // (probs.shape[2] * probs.shape[3]))
        for z0 in range(0, probs.shape[1], step):
            chunk = probs[:, z0 : z0 + step]
            entropy[z0 : z0 + step] = normalized_entropy(apply_temperature(chunk, temperature))
    return _Scan(seed, prediction_counts, reference_counts, prediction, entropy)


def _confusion(
    scan: _Scan, roi_confusion: NDArray[np.int64], n_voxels: int, settings: MetricSettings
) -> NDArray[np.int64]:
    """The whole volume's confusion matrix from the ROI's; outside the ROI the seed is empty, so the counts follow."""
    confusion = roi_confusion.copy()
    outside = n_voxels - int(roi_confusion.sum())
    if settings.roi_mode == "union":
        confusion[0, 0] += outside
    elif settings.roi_mode == "pred":
        confusion[0, :] += scan.reference_counts - roi_confusion.sum(axis=0)
    elif settings.roi_mode == "gt":
        confusion[:, 0] += scan.prediction_counts - roi_confusion.sum(axis=1)
    return confusion


def _ece_bins(
    p_cal: NDArray[np.floating], prediction: NDArray[np.uint8], reference: NDArray[np.integer], settings: MetricSettings
) -> ReliabilityBins:
    if settings.ece_mode == "top_label":
        confidence = np.take_along_axis(p_cal, prediction[None, :].astype(np.intp), axis=0)[0]
        return reliability_bins(confidence, prediction == reference, settings.ece_bins)
    if settings.ece_mode == "foreground":
        return reliability_bins(1.0 - p_cal[0], reference > 0, settings.ece_bins)
    return stack_bins(
        [reliability_bins(p_cal[c], reference == c, settings.ece_bins) for c in range(p_cal.shape[0])]
    )


def _roi(
    scan: _Scan, shape: tuple[int, int, int], spacing: tuple[float, float, float], settings: MetricSettings
) -> Roi | None:
    """The ROI of ``settings.roi_mode``; None when its seed holds no voxel (nothing predicted under ``pred`` or
    without a reference, nothing predicted nor referenced under ``union``, an empty reference under ``gt``)."""
    if settings.roi_mode == "whole_volume":
        return whole_volume(shape)
    if not scan.seed.any():
        return None
    return dilate_mm(scan.seed, spacing, settings.roi_radius_mm)


def _empty_roi_result(
    scan: _Scan, labels: NDArray[np.integer], n_classes: int, spacing: tuple[float, float, float],
    settings: MetricSettings, temperature: float | None, maps_budget: float | None,
) -> CaseResult:
    """The result of a case whose ROI is empty: DSC from the whole volume's counts (outside the ROI the seed is
    empty, so they follow), every ROI metric NaN (undefined, never 0), nothing flagged at any budget."""
    shape = (int(labels.shape[0]), int(labels.shape[1]), int(labels.shape[2]))
    confusion = _confusion(scan, np.zeros((n_classes, n_classes), dtype=np.int64), math.prod(shape), settings)
    dsc = dice_from_confusion(confusion, math.nan if settings.empty_structure_policy == "exclude" else 1.0)
    budgets = settings.budget_fractions()
    n_budgets = len(budgets)
    undefined = np.full(n_budgets, math.nan)
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    groups = n_classes if settings.ece_mode == "classwise" else 1
    none_per_class = tuple(math.nan for _ in range(n_classes))
    metrics = CaseMetrics(
        dsc=tuple(float(d) for d in dsc), dsc_mean_fg=_mean_defined(dsc[1:]), ece=math.nan,
        reliability=ReliabilityBins(np.zeros((groups, settings.ece_bins), dtype=np.int64),
                                    np.zeros((groups, settings.ece_bins)),
                                    np.zeros((groups, settings.ece_bins), dtype=np.int64)),
        brier=math.nan, nll=math.nan,
        curve=BudgetCurve(np.array([float(b) for b in budgets]), np.zeros(n_budgets, dtype=np.int64),
                          np.zeros(n_budgets), np.zeros(n_budgets, dtype=np.int64), undefined, undefined.copy(),
                          undefined.copy()),
        ueo_auc=math.nan, fp_tp_auc=math.nan, fn_tn_auc=math.nan, ece_structure=none_per_class,
        brier_structure=none_per_class, ueo_auc_structure=none_per_class, fp_tp_auc_structure=none_per_class,
        fn_tn_auc_structure=none_per_class, roi_voxels=0, error_voxels=0, mean_entropy_roi=math.nan,
        voxel_ml=voxel_ml, temperature=temperature,
    )
    maps = None
    if maps_budget is not None and scan.prediction is not None and scan.entropy is not None:
        maps = CaseMaps(prediction=scan.prediction, entropy=scan.entropy, error=scan.prediction != labels,
                        budget_mask=np.zeros(shape, dtype=bool), budget=maps_budget,
                        ranking=np.zeros(0, dtype=np.intp), roi_voxels=0)
    return CaseResult(metrics=metrics, maps=maps)


def _mean_defined(values: NDArray[np.float64]) -> float:
    """The mean of the defined (non-NaN) values; NaN when none is."""
    defined = values[~np.isnan(values)]
    return float(np.mean(defined)) if defined.size else math.nan


def _auc_pair(
    order: NDArray[np.signedinteger], entropy: NDArray[np.floating], errors: NDArray[np.bool_],
    first: NDArray[np.bool_], budgets: Sequence[Fraction], settings: MetricSettings,
) -> tuple[float, float]:
    """The error-detection areas of voxels ranked by ``order`` (all n of them), shapes (n,): among ``first``, then
    among the rest, of ``errors`` by ``entropy`` — AUROC or capture area as ``settings.auc_mode`` says."""
    if settings.auc_mode == "roc":
        return ranked_auroc_pair(order, entropy, errors, first)
    ranked_first = first[order]
    ranked_errors = errors[order]
    return capture_area(ranked_errors[ranked_first], budgets), capture_area(ranked_errors[~ranked_first], budgets)


def _structure_rois(
    roi: Roi, prediction: NDArray[np.uint8], reference: NDArray[np.integer], n_classes: int,
    spacing: tuple[float, float, float], settings: MetricSettings,
) -> list[NDArray[np.bool_] | None]:
    """R_c for each class c = 0..C-1 as a mask over the case ROI's voxels (shape (|R|,), raster order); None for the
    background and where c's seed is empty. The seed {pred = c} ∪ {g = c} (or one side) lies in R and every voxel
    within r of it too, so the distance transform runs in R's box and is exact."""
    if settings.roi_mode == "whole_volume":
        return [None, *(np.ones(prediction.shape, dtype=bool) for _ in range(1, n_classes))]
    rois: list[NDArray[np.bool_] | None] = [None]
    seed = np.zeros(roi.local.shape, dtype=bool)
    for c in range(1, n_classes):
        own = prediction == c if settings.roi_mode != "gt" else np.zeros(prediction.shape, dtype=bool)
        if settings.roi_mode != "pred":
            own |= reference == c
        if not own.any():
            rois.append(None)
            continue
        seed[roi.local] = own
        rois.append(dilate_mm(seed, spacing, settings.roi_radius_mm).dense()[roi.local])
    return rois


def _structure_metrics(
    rois: list[NDArray[np.bool_] | None], p_cal: NDArray[np.floating], prediction: NDArray[np.uint8],
    reference: NDArray[np.integer], entropy: NDArray[np.floating], order: NDArray[np.signedinteger],
    budgets: Sequence[Fraction], voxel_ml: float, settings: MetricSettings,
) -> NDArray[np.float64]:
    """ECE_c, Brier_c, UEO-AUC_c, FP-TP AUC_c and FN-TN AUC_c (rows) per class c (columns, shape (5, C)) over R_c
    (``rois``, masks over the ROI voxels); NaN where R_c is None. Inputs are the ROI voxels': ``p_cal`` (C, |R|), the
    rest (|R|,), ``order`` the ROI's ranking by entropy."""
    values = np.full((5, len(rois)), math.nan)
    for c, inside in enumerate(rois):
        if inside is None:
            continue
        truth = reference[inside] == c
        predicted = prediction[inside] == c
        confidence = p_cal[c][inside]
        errors = predicted != truth
        ranked = (np.cumsum(inside, dtype=np.intp) - 1)[order[inside[order]]]
        gap = confidence.astype(np.float64) - truth
        curve = ueo_curve(ranked, errors, budgets, voxel_ml, settings.empty_error_policy == "exclude")
        values[:, c] = (
            reliability_bins(confidence, truth, settings.ece_bins).ece(),
            float(np.dot(gap, gap)) / gap.size,
            curve.area(),
            *_auc_pair(ranked, entropy[inside], errors, predicted, budgets, settings),
        )
    return values


def evaluate_case(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    spacing: Sequence[float],
    settings: MetricSettings = DEFAULT_SETTINGS,
    temperature: float | None = None,
    maps_budget: float | None = None,
) -> CaseResult:
    """Every per-case metric of the spec for one configuration.

    Args:
        probs: pooled class probabilities p̄ on the original grid, shaped (C, Z, Y, X), float32 or float64,
            non-negative and summing to 1 over axis 0 (within ``settings.sum_tolerance``).
        labels: reference class index per voxel, shaped (Z, Y, X), integer, values 0..C-1.
        spacing: voxel size (z, y, x) in mm.
        settings: the spec's options.
        temperature: T of temperature scaling (p_cal = softmax(ln p̄ / T)); None = no scaling. For the
            ``per_member`` mode, scale the members before pooling and pass None here.
        maps_budget: when given (a fraction in [0, 1]), also return the voxel maps, with the top-budget mask
            U_b of this budget (:mod:`pipeline.metrics.review_budget`: rounding, tie rule).

    Returns:
        A :class:`CaseResult` with the metrics and, when ``maps_budget`` is given, the maps. An empty ROI (nothing
        to grow it from) is a result too: DSC defined, every ROI metric NaN, ``roi_voxels`` 0, an empty mask.
    """
    check_probability_shape(probs)
    check_labels(labels, probs.shape[1:], probs.shape[0])
    spacing3 = check_spacing(spacing)
    if temperature is not None and not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if maps_budget is not None and not 0 <= maps_budget <= 1:
        raise ValueError(f"maps_budget must be in [0, 1], got {maps_budget}")
    n_classes = probs.shape[0]
    shape = (int(probs.shape[1]), int(probs.shape[2]), int(probs.shape[3]))
    scan = _scan(probs, labels, settings, temperature, maps_budget is not None)
    roi = _roi(scan, shape, spacing3, settings)
    if roi is None:
        return _empty_roi_result(scan, labels, n_classes, spacing3, settings, temperature, maps_budget)
    scan.seed = np.empty(0, dtype=bool)
    flat = roi.flat_indices()
    p_roi = roi.gather(probs, flat)
    ref_roi = roi.gather(labels, flat)
    pred_roi = argmax_classes(p_roi)
    p_cal = apply_temperature(p_roi, temperature)
    reuse_map = scan.entropy is not None and scan.entropy.dtype == p_cal.dtype
    entropy = roi.gather(scan.entropy, flat) if reuse_map and scan.entropy is not None else normalized_entropy(p_cal)
    errors = pred_roi != ref_roi
    budgets = settings.budget_fractions()
    n_roi = int(entropy.size)
    order = descending_order(entropy)
    voxel_ml = spacing3[0] * spacing3[1] * spacing3[2] / 1000.0
    curve = ueo_curve(order, errors, budgets, voxel_ml, settings.empty_error_policy == "exclude")
    foreground = pred_roi > 0
    fp_tp, fn_tn = _auc_pair(order, entropy, errors, foreground, budgets, settings)
    structure = _structure_metrics(_structure_rois(roi, pred_roi, ref_roi, n_classes, spacing3, settings), p_cal,
                                   pred_roi, ref_roi, entropy, order, budgets, voxel_ml, settings)
    confusion = _confusion(scan, confusion_counts(pred_roi, ref_roi, n_classes), math.prod(shape), settings)
    dsc = dice_from_confusion(confusion, math.nan if settings.empty_structure_policy == "exclude" else 1.0)
    bins = _ece_bins(p_cal, pred_roi, ref_roi, settings)
    picked = np.take_along_axis(p_cal, ref_roi[None, :].astype(np.intp), axis=0)[0]
    metrics = CaseMetrics(
        dsc=tuple(float(d) for d in dsc),
        dsc_mean_fg=_mean_defined(dsc[1:]),
        ece=bins.ece(),
        reliability=bins,
        brier=brier_score(p_cal, ref_roi, foreground_only=settings.brier_mode == "foreground"),
        nll=float(-np.mean(log_probabilities(picked.astype(np.float64)))),
        curve=curve,
        ueo_auc=curve.area(),
        fp_tp_auc=fp_tp,
        fn_tn_auc=fn_tn,
        ece_structure=tuple(structure[0].tolist()),
        brier_structure=tuple(structure[1].tolist()),
        ueo_auc_structure=tuple(structure[2].tolist()),
        fp_tp_auc_structure=tuple(structure[3].tolist()),
        fn_tn_auc_structure=tuple(structure[4].tolist()),
        roi_voxels=n_roi,
        error_voxels=int(np.count_nonzero(errors)),
        mean_entropy_roi=float(np.mean(entropy, dtype=np.float64)),
        voxel_ml=voxel_ml,
        temperature=temperature,
    )
    maps = None
    if maps_budget is not None and scan.prediction is not None and scan.entropy is not None:
        ranking = flat[order[: flagged_count(max(maps_budget, settings.budget_max), n_roi)]]
        mask = np.zeros(shape, dtype=bool)
        mask.ravel()[ranking[: flagged_count(maps_budget, n_roi)]] = True
        maps = CaseMaps(
            prediction=scan.prediction,
            entropy=scan.entropy,
            error=scan.prediction != labels,
            budget_mask=mask,
            budget=maps_budget,
            ranking=ranking,
            roi_voxels=n_roi,
        )
    return CaseResult(metrics=metrics, maps=maps)


def calibration_roi(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    spacing: Sequence[float],
    settings: MetricSettings = DEFAULT_SETTINGS,
) -> NDArray[np.intp]:
    """Flat (C-order) indices into the (Z, Y, X) grid of the ROI voxels of one calibration case: the ROI of the
    metrics, grown from the reference and the argmax of ``probs`` (C, Z, Y, X)."""
    check_probability_shape(probs)
    check_labels(labels, probs.shape[1:], probs.shape[0])
    spacing3 = check_spacing(spacing)
    shape = (int(probs.shape[1]), int(probs.shape[2]), int(probs.shape[3]))
    roi = _roi(_scan(probs, labels, settings, None, with_maps=False), shape, spacing3, settings)
    if roi is None:
        raise ValueError(f"empty ROI: no foreground to grow it from (roi_mode={settings.roi_mode!r})")
    return roi.flat_indices()


def calibration_voxels(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    spacing: Sequence[float],
    settings: MetricSettings = DEFAULT_SETTINGS,
) -> tuple[NDArray[np.floating], NDArray[np.integer]]:
    """ROI voxels of one calibration case for :func:`~pipeline.metrics.temperature.fit_temperature`.

    Returns the pooled probabilities (C, |R|) and reference labels (|R|,) at the ROI voxels (the same ROI as the
    metrics, :func:`calibration_roi`); concatenate over calibration cases along the last axis before fitting.
    """
    flat = calibration_roi(probs, labels, spacing, settings)
    n_classes = probs.shape[0]
    return probs.reshape(n_classes, -1)[:, flat], labels.reshape(-1)[flat]
