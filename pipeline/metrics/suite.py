"""One entry point computing every per-case metric of the spec for one configuration, sharing the work.

Cost: the probability map is validated (two passes), then scanned once in z-chunks that stay in cache (one argmax,
the confusion counts, the ROI seed, and the entropy map when maps are asked for); everything else runs on the ROI
voxels only: one temperature application, one entropy, one stable sort shared by the UEO curve and both AUCs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.budget import auroc_ranked, capture_area, descending_order, ueo_curve
from pipeline.metrics.calibration import (
    ReliabilityBins,
    brier_score,
    normalized_entropy,
    reliability_bins,
    stack_bins,
)
from pipeline.metrics.overlap import confusion_counts, dice_from_confusion
from pipeline.metrics.results import CaseMaps, CaseMetrics, CaseResult
from pipeline.metrics.roi import Roi, dilate_mm, whole_volume
from pipeline.metrics.settings import MetricSettings
from pipeline.metrics.temperature import apply_temperature, log_probabilities
from pipeline.metrics.validation import check_labels, check_probabilities, check_spacing

_CHUNK_VOXELS = 1 << 16


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


def _scan(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    settings: MetricSettings,
    temperature: float | None,
    with_entropy: bool,
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.bool_], NDArray[np.float32] | None]:
    """Chunked pass over z: prediction, confusion matrix, ROI seed and (optionally) the calibrated entropy map."""
    n_classes, depth = probs.shape[0], probs.shape[1]
    prediction = np.empty(probs.shape[1:], dtype=np.uint8)
    seed = np.empty(probs.shape[1:], dtype=bool)
    entropy = np.empty(probs.shape[1:], dtype=np.float32) if with_entropy else None
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    step = max(1, _CHUNK_VOXELS // (probs.shape[2] * probs.shape[3]))
    for z0 in range(0, depth, step):
        z1 = min(depth, z0 + step)
        chunk = probs[:, z0:z1]
        pred = argmax_classes(chunk)
        prediction[z0:z1] = pred
        ref = labels[z0:z1]
        confusion += confusion_counts(pred, ref, n_classes)
        if settings.roi_mode == "union":
            np.logical_or(pred > 0, ref > 0, out=seed[z0:z1])
        elif settings.roi_mode == "pred":
            np.greater(pred, 0, out=seed[z0:z1])
        else:
            np.greater(ref, 0, out=seed[z0:z1])
        if entropy is not None:
            entropy[z0:z1] = normalized_entropy(apply_temperature(chunk, temperature))
    return prediction, confusion, seed, entropy


def _ece_bins(
    p_cal: NDArray[np.floating], prediction: NDArray[np.uint8], reference: NDArray[np.integer], settings: MetricSettings
):
    if settings.ece_mode == "top_label":
        confidence = np.take_along_axis(p_cal, prediction[None, :].astype(np.intp), axis=0)[0]
        return reliability_bins(confidence, prediction == reference, settings.ece_bins)
    if settings.ece_mode == "foreground":
        return reliability_bins(1.0 - p_cal[0], reference > 0, settings.ece_bins)
    return stack_bins(
        [reliability_bins(p_cal[c], reference == c, settings.ece_bins) for c in range(p_cal.shape[0])]
    )


def evaluate_case(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    spacing: Sequence[float],
    settings: MetricSettings = MetricSettings(),
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
            U_b of this budget.

    Returns:
        A :class:`CaseResult` with the metrics and, when ``maps_budget`` is given, the maps.
    """
    check_probabilities(probs, settings.sum_tolerance)
    check_labels(labels, probs.shape[1:], probs.shape[0])
    spacing3 = check_spacing(spacing)
    if temperature is not None and not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if maps_budget is not None and not 0 <= maps_budget <= 1:
        raise ValueError(f"maps_budget must be in [0, 1], got {maps_budget}")
    shape = (int(probs.shape[1]), int(probs.shape[2]), int(probs.shape[3]))
    with_maps = maps_budget is not None
    prediction, confusion, seed, entropy_map = _scan(probs, labels, settings, temperature, with_maps)
    if settings.roi_mode == "whole_volume":
        roi = whole_volume(shape)
    else:
        try:
            roi = dilate_mm(seed, spacing3, settings.roi_radius_mm)
        except ValueError as error:
            raise ValueError(
                f"empty ROI: neither prediction nor reference holds foreground for roi_mode={settings.roi_mode!r}"
            ) from error
    del seed
    p_cal = apply_temperature(roi.gather(probs), temperature)
    pred_roi = roi.gather(prediction)
    ref_roi = roi.gather(labels)
    entropy = roi.gather(entropy_map) if entropy_map is not None else normalized_entropy(p_cal)
    errors = pred_roi != ref_roi
    order = descending_order(entropy)
    voxel_ml = spacing3[0] * spacing3[1] * spacing3[2] / 1000.0
    budgets = settings.budget_fractions()
    curve = ueo_curve(order, errors, budgets, voxel_ml, settings.empty_error_policy == "exclude")
    ranked_fg = pred_roi[order] > 0
    ranked_errors = errors[order]
    ranked_entropy = entropy[order]
    if settings.auc_mode == "roc":
        fp_tp = auroc_ranked(ranked_entropy[ranked_fg], ranked_errors[ranked_fg])
        fn_tn = auroc_ranked(ranked_entropy[~ranked_fg], ranked_errors[~ranked_fg])
    else:
        fp_tp = capture_area(ranked_errors[ranked_fg], budgets)
        fn_tn = capture_area(ranked_errors[~ranked_fg], budgets)
    dsc = dice_from_confusion(confusion)
    bins = _ece_bins(p_cal, pred_roi, ref_roi, settings)
    picked = np.take_along_axis(p_cal, ref_roi[None, :].astype(np.intp), axis=0)[0]
    metrics = CaseMetrics(
        dsc=tuple(float(d) for d in dsc),
        dsc_mean_fg=float(np.mean(dsc[1:])),
        ece=bins.ece(),
        reliability=bins,
        brier=brier_score(p_cal, ref_roi, foreground_only=settings.brier_mode == "foreground"),
        nll=float(-np.mean(log_probabilities(picked.astype(np.float64)))),
        curve=curve,
        ueo_auc=curve.area(),
        fp_tp_auc=fp_tp,
        fn_tn_auc=fn_tn,
        roi_voxels=int(entropy.size),
        error_voxels=int(np.count_nonzero(errors)),
        mean_entropy_roi=float(np.mean(entropy, dtype=np.float64)),
        voxel_ml=voxel_ml,
        temperature=temperature,
    )
    maps = None
    if with_maps and entropy_map is not None and maps_budget is not None:
        maps = _maps(prediction, labels, entropy_map, roi, order, maps_budget)
    return CaseResult(metrics=metrics, maps=maps)


def _maps(
    prediction: NDArray[np.uint8],
    labels: NDArray[np.integer],
    entropy: NDArray[np.float32],
    roi: Roi,
    order: NDArray[np.intp],
    budget: float,
) -> CaseMaps:
    flagged = math.ceil(Fraction(str(budget)) * order.size)
    mask = np.zeros(roi.shape, dtype=bool)
    mask.ravel()[roi.flat_indices()[np.sort(order[:flagged])]] = True
    return CaseMaps(
        prediction=prediction,
        entropy=entropy,
        error=prediction != labels,
        budget_mask=mask,
        budget=budget,
    )


def calibration_voxels(
    probs: NDArray[np.floating],
    labels: NDArray[np.integer],
    spacing: Sequence[float],
    settings: MetricSettings = MetricSettings(),
) -> tuple[NDArray[np.floating], NDArray[np.integer]]:
    """ROI voxels of one calibration case for :func:`~pipeline.metrics.temperature.fit_temperature`.

    Returns the pooled probabilities (C, |R|) and reference labels (|R|,) at the ROI voxels (the same ROI as the
    metrics); concatenate over calibration cases along the last axis before fitting.
    """
    check_probabilities(probs, settings.sum_tolerance)
    check_labels(labels, probs.shape[1:], probs.shape[0])
    spacing3 = check_spacing(spacing)
    shape = (int(probs.shape[1]), int(probs.shape[2]), int(probs.shape[3]))
    _, _, seed, _ = _scan(probs, labels, settings, None, with_entropy=False)
    roi = whole_volume(shape) if settings.roi_mode == "whole_volume" else dilate_mm(seed, spacing3, settings.roi_radius_mm)
    return roi.gather(probs), roi.gather(labels)
