"""Temperature scaling: p_cal = softmax(log p̄ / T), T fitted by NLL on calibration ROI voxels.

One scalar T per configuration (the spec's, :func:`fit_temperature`), or a vector with one T_c per class
(:func:`fit_class_temperatures`): p_cal = softmax(log p̄_c / T_c). A scalar T is monotone per voxel, so argmax and
DSC are unchanged; a vector is not, so the calibrated argmax may differ from the uncalibrated one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp, softmax

from pipeline.metrics.kernels import pooled_nll
from pipeline.metrics.settings import DEFAULT_SETTINGS, MetricSettings

PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)
"""The one floor of p before ln p (the smallest normal float32, ln = -87.3), whatever the dtype: fitting a temperature
in float64 and applying it in float32 see the same log-probability for p = 0, so a confidently wrong voxel weighs
the same in the fit as where the temperature is applied."""


def log_probabilities(probs: NDArray[np.floating]) -> NDArray[np.floating]:
    """ln p with p floored at :data:`PROBABILITY_FLOOR` (p = 0 gives -87.3, finite); same dtype."""
    return np.log(np.maximum(probs, np.asarray(PROBABILITY_FLOOR, dtype=probs.dtype)))


Temperature = float | Sequence[float]
"""A scalar T, or one T_c per class (a class-wise temperature vector)."""


def apply_temperature(probs: NDArray[np.floating], temperature: Temperature | None) -> NDArray[np.floating]:
    """Calibrated probabilities softmax(ln p / T) over axis 0 of ``probs`` shaped (C, ...).

    ``temperature``: a scalar, or C values (class c's ln p divided by T_c). None, 1 or all ones returns ``probs``
    unchanged (the same object). A scalar is monotone per voxel, so the argmax of the result equals the argmax of
    the input wherever the input has no tie; a vector of unequal values may change the argmax.
    """
    if temperature is None:
        return probs
    values = np.asarray(temperature, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and values.shape != (probs.shape[0],)):
        raise ValueError(f"temperature must be a scalar or {probs.shape[0]} values (one per class), "
                         f"got shape {values.shape}")
    if not (np.all(values > 0) and np.all(np.isfinite(values))):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    if np.all(values == 1.0):
        return probs
    scaled = log_probabilities(probs)
    scaled /= values.astype(scaled.dtype).reshape(values.shape + (1,) * (probs.ndim - 1))
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


def _checked(scores: NDArray[np.floating], labels: NDArray[np.integer], settings: MetricSettings
             ) -> NDArray[np.intp]:
    """Validate the inputs of a fit under ``settings.temperature_mode``; the subsample's voxel indices."""
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
    if not per_member and scores.min() < 0:
        raise ValueError("scores must be probabilities (>= 0) for temperature_mode='after_pooling'")
    return _subsample(n, settings)


def _log_bounds(settings: MetricSettings) -> tuple[float, float]:
    return math.log(settings.temperature_min), math.log(settings.temperature_max)


def _search(objective: Callable[[float], float], settings: MetricSettings) -> float:
    """The ln T of the bounded scalar search; 0 (T = 1) unless the search found a lower NLL."""
    result = minimize_scalar(objective, bounds=_log_bounds(settings), method="bounded", options={"xatol": 1e-5})
    return float(result.x) if float(result.fun) < objective(0.0) else 0.0


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
    keep = _checked(scores, labels, settings)
    picked_labels = labels[keep].astype(np.intp)
    per_member = settings.temperature_mode == "per_member"
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
        data = log_probabilities(scores[:, keep].astype(np.float64))

        def objective(log_t: float) -> float:
            return pooled_nll(data, picked_labels, math.exp(log_t))

    best_log_t = _search(objective, settings)
    return TemperatureFit(
        temperature=math.exp(best_log_t),
        nll_before=objective(0.0),
        nll_after=objective(best_log_t),
        n_voxels=int(keep.size),
    )


@dataclass(frozen=True)
class ClassTemperatureFit:
    """A class-wise temperature vector (one T_c per class) with the calibration NLL before (all T_c = 1) and after,
    on ``n_voxels`` voxels; ``scalar`` is the one-T fit on the same voxels that the vector search started from."""

    temperatures: tuple[float, ...]
    nll_before: float
    nll_after: float
    n_voxels: int
    scalar: TemperatureFit


def _class_nll(log_t: NDArray[np.float64], log_probs: NDArray[np.float64], labels: NDArray[np.intp]
               ) -> tuple[float, NDArray[np.float64]]:
    """Mean NLL of softmax(ln p̄_c / T_c) and its gradient with respect to ln T_c."""
    scaled = log_probs * np.exp(-log_t)[:, None]
    columns = np.arange(labels.size)
    nll = float(np.mean(logsumexp(scaled, axis=0) - scaled[labels, columns]))
    residual = softmax(scaled, axis=0)
    residual[labels, columns] -= 1.0
    # d scaled_c / d ln T_c = -scaled_c
    return nll, -np.mean(residual * scaled, axis=1)


def fit_class_temperatures(
    scores: NDArray[np.floating], labels: NDArray[np.integer], settings: MetricSettings = DEFAULT_SETTINGS
) -> ClassTemperatureFit:
    """Fit one T_c > 0 per class minimising the mean NLL of softmax(ln p̄_c / T_c) on calibration voxels.

    ``scores`` are pooled probabilities (C, n) (``temperature_mode`` ``after_pooling`` only). The same voxels as
    :func:`fit_temperature` (seeded subsample of at most ``temperature_max_voxels``); the scalar fit on them seeds
    L-BFGS-B (analytic gradient) over ln T_c, each in [ln T_min, ln T_max]. The vector's NLL is never above the
    scalar's: should the search end higher, the scalar's T is kept for every class.
    """
    if settings.temperature_mode != "after_pooling":
        raise ValueError("a class-wise temperature vector is fitted on pooled probabilities "
                         "(temperature_mode='after_pooling')")
    scalar = fit_temperature(scores, labels, settings)
    keep = _subsample(scores.shape[-1], settings)
    data = log_probabilities(scores[:, keep].astype(np.float64))
    picked = labels[keep].astype(np.intp)
    n_classes = scores.shape[0]
    start = np.full(n_classes, math.log(scalar.temperature))
    result = minimize(_class_nll, start, args=(data, picked), jac=True, method="L-BFGS-B",
                      bounds=[_log_bounds(settings)] * n_classes, options={"ftol": 1e-12, "gtol": 1e-8})
    best = np.asarray(result.x, dtype=np.float64)
    nll_after = _class_nll(best, data, picked)[0]
    if nll_after > scalar.nll_after:
        best, nll_after = start, scalar.nll_after
    return ClassTemperatureFit(
        temperatures=tuple(float(t) for t in np.exp(best)),
        nll_before=scalar.nll_before,
        nll_after=nll_after,
        n_voxels=scalar.n_voxels,
        scalar=scalar,
    )
