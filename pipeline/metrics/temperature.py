"""Temperature scaling: p_cal = softmax(log p̄ / T), T fitted by NLL on calibration ROI voxels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from pipeline.metrics.kernels import pooled_nll
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings

PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
"""The one floor of p before ln p (the smallest normal float32, ln = -87.3), whatever the dtype: fitting a temperature
in float64 and applying it in float32 see the same log-probability for p = 0, so a confidently wrong voxel weighs
the same in the fit as where the temperature is applied."""


def log_probabilities(probs: NDArray[np.floating]) -> NDArray[np.floating]:
    """ln p with p floored at :data:`PROBABILITY_FLOOR` (p = 0 gives -87.3, finite); same dtype."""
    return np.log(np.maximum(probs, np.asarray(PROBABILITY_FLOOR, dtype=probs.dtype)))


def apply_temperature(probs: NDArray[np.floating], temperature: float | None) -> NDArray[np.floating]:
    """Calibrated probabilities softmax(ln p / T) over axis 0 of ``probs`` shaped (C, ...).

    ``temperature`` None or 1 returns ``probs`` unchanged (the same object). Monotone per voxel, so the argmax
    of the result equals the argmax of the input wherever the input has no tie.
    """
    if temperature is None or temperature == 1.0:
        return probs
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    scaled = log_probabilities(probs)
    scaled /= np.asarray(temperature, dtype=scaled.dtype)
    scaled -= scaled.max(axis=0, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=0, keepdims=True)
    return scaled


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature with the calibration NLL before (T = 1) and after, on ``n_voxels`` voxels."""

    temperature: float
    nll_before: float
    nll_after: float
    n_voxels: int


def _nll_members(member_logits: NDArray[np.float64], labels: NDArray[np.intp], temperature: float) -> float:
    scaled = member_logits / temperature
    scaled -= logsumexp(scaled, axis=1, keepdims=True)
    picked = np.take_along_axis(scaled, labels[None, None, :], axis=1)[:, 0, :]
    pooled_log = logsumexp(picked, axis=0) - math.log(member_logits.shape[0])
    return float(-np.mean(pooled_log))


def _subsample(n: int, settings: MetricSettings) -> NDArray[np.intp]:
    if n <= settings.temperature_max_voxels:
        return np.arange(n)
    rng = np.random.default_rng(settings.temperature_seed)
    return np.sort(rng.choice(n, size=settings.temperature_max_voxels, replace=False))


def fit_temperature(
    scores: NDArray[np.floating], labels: NDArray[np.integer], settings: MetricSettings = DEFAULT_SETTINGS
) -> TemperatureFit:
    """Fit one scalar T > 0 minimising the mean NLL of reference labels on calibration voxels.

    Args:
        scores: with ``settings.temperature_mode == "after_pooling"``, pooled probabilities p̄ shaped (C, n)
            (ROI voxels of calibration cases, concatenated); with ``"per_member"``, member logits shaped (K, C, n),
            pooled by ``settings.pooling`` (mean of the scaled softmaxes, or softmax of the scaled mean logit).
        labels: reference class index per voxel, shape (n,).
        settings: bounds of the search over ln T, subsample size and seed.

    A bounded scalar search over ln T in [ln T_min, ln T_max]; at most ``temperature_max_voxels`` voxels are used,
    drawn with ``temperature_seed``.
    """
    per_member = settings.temperature_mode == "per_member"
    expected_ndim = 3 if per_member else 2
    if scores.ndim != expected_ndim:
        shape = "(K, C, n) member logits" if per_member else "(C, n) pooled probabilities"
        raise ValueError(
            f"scores must be {shape} for temperature_mode={settings.temperature_mode!r}, got {scores.shape}"
        )
    n_classes, n = scores.shape[-2], scores.shape[-1]
    if labels.shape != (n,):
        raise ValueError(f"labels must be shaped ({n},) to match scores, got {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    if n == 0:
        raise ValueError("scores holds no calibration voxel")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must hold class indices 0..{n_classes - 1}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    keep = _subsample(n, settings)
    picked_labels = labels[keep].astype(np.intp)
    if per_member and settings.pooling == "logit_mean":
        # softmax(mean_k(z_k / T)) = softmax(mean_k(z_k) / T): the mean logit is the pooled logit.
        data = scores[..., keep].astype(np.float64).mean(axis=0)

        def objective(log_t: float) -> float:
            return pooled_nll(data, picked_labels, math.exp(log_t))
    elif per_member:
        data = scores[..., keep].astype(np.float64)

        def objective(log_t: float) -> float:
            return _nll_members(data, picked_labels, math.exp(log_t))
    else:
        if scores.min() < 0:
            raise ValueError("scores must be probabilities (>= 0) for temperature_mode='after_pooling'")
        data = log_probabilities(scores[:, keep].astype(np.float64))

        def objective(log_t: float) -> float:
            return pooled_nll(data, picked_labels, math.exp(log_t))

    bounds = (math.log(settings.temperature_min), math.log(settings.temperature_max))
    result = minimize_scalar(objective, bounds=bounds, method="bounded", options={"xatol": 1e-5})
    best_log_t = float(result.x)
    nll_before = objective(0.0)
    if nll_before <= float(result.fun):
        best_log_t = 0.0
    return TemperatureFit(
        temperature=math.exp(best_log_t),
        nll_before=nll_before,
        nll_after=objective(best_log_t),
        n_voxels=int(keep.size),
    )
