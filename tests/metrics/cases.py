"""Synthetic cases and independent reference computations shared by the metric-engine tests.

Nothing here imports ``pipeline.metrics``: every helper is an oracle written from ``shared/spec/metrics.md``
with NumPy / SciPy only, so agreement with the engine is evidence, not a tautology.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, special, stats

Spacing3 = tuple[float, float, float]

ROI_RADIUS_MM = 15.0
BUDGET_FRACTIONS: list[Fraction] = [Fraction(1, 20) * i / 50 for i in range(51)]


@dataclass(frozen=True)
class Case:
    """One synthetic case: probabilities (C, Z, Y, X), reference labels (Z, Y, X), spacing (z, y, x) in mm."""

    probs: NDArray[np.floating]
    labels: NDArray[np.int64]
    spacing: Spacing3

    @property
    def n_classes(self) -> int:
        return int(self.probs.shape[0])

    def astype(self, dtype: type[np.floating]) -> Case:
        return Case(self.probs.astype(dtype), self.labels, self.spacing)


def softmax64(logits: NDArray[np.floating]) -> NDArray[np.float64]:
    """Softmax over axis 0 in float64 (SciPy's implementation, independent of the engine's)."""
    return np.asarray(special.softmax(np.asarray(logits, dtype=np.float64), axis=0), dtype=np.float64)


def random_case(
    seed: int,
    n_classes: int = 3,
    shape: tuple[int, int, int] = (6, 10, 12),
    spacing: Spacing3 = (2.5, 1.0, 0.8),
    logit_scale: float = 3.0,
) -> Case:
    """Unstructured case: i.i.d. normal logits and i.i.d. uniform labels (errors everywhere)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=logit_scale, size=(n_classes, *shape))
    labels = rng.integers(0, n_classes, size=shape).astype(np.int64)
    labels.flat[0] = 1  # at least one foreground reference voxel, so the ROI is never empty
    return Case(softmax64(logits), labels, spacing)


def structured_case(
    seed: int,
    n_classes: int = 3,
    shape: tuple[int, int, int] = (12, 48, 48),
    spacing: Spacing3 = (3.0, 1.2, 1.2),
    n_structures: int = 3,
    sharpness: float = 5.0,
    noise: float = 0.6,
) -> Case:
    """A few ellipsoids: reference = the ellipsoids, logits = a smooth score of shifted / rescaled ellipsoids + noise.

    The prediction therefore disagrees with the reference in shells around each structure (the realistic error
    pattern), and the noise (smoothed plus white) breaks every symmetry so that entropies have no accidental ties.
    """
    rng = np.random.default_rng(seed)
    coords = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij")
    extent = np.array([n * s for n, s in zip(shape, spacing, strict=True)])
    labels = np.zeros(shape, dtype=np.int64)
    logits = np.full((n_classes, *shape), -sharpness, dtype=np.float64)
    logits[0] = 0.0
    for k in range(n_structures):
        c = 1 + k % (n_classes - 1)
        center = rng.uniform(0.2, 0.8, size=3) * extent
        axes = np.minimum(rng.uniform(4.0, 9.0, size=3), extent / 3)
        axes = np.maximum(axes, np.array(spacing) * 1.5)
        radius = np.sqrt(sum(((g - m) / a) ** 2 for g, m, a in zip(coords, center, axes, strict=True)))
        labels[radius <= 1.0] = c
        shifted = center + rng.normal(scale=1.0, size=3) * np.array(spacing)
        scaled = axes * rng.uniform(0.85, 1.15, size=3)
        radius_pred = np.sqrt(sum(((g - m) / a) ** 2 for g, m, a in zip(coords, shifted, scaled, strict=True)))
        logits[c] = np.maximum(logits[c], sharpness * (1.0 - radius_pred))
    smooth = ndimage.gaussian_filter(rng.normal(size=(n_classes, *shape)), sigma=(0, 1, 1.5, 1.5))
    logits += noise * (2.0 * smooth + rng.normal(size=logits.shape))
    return Case(softmax64(logits), labels, spacing)


def argmax64(probs: NDArray[np.floating]) -> NDArray[np.int64]:
    """Predicted class per voxel (first class on ties, like ``np.argmax``)."""
    return np.argmax(probs, axis=0).astype(np.int64)


def roi_oracle(seed: NDArray[np.bool_], spacing: Spacing3, radius_mm: float = ROI_RADIUS_MM) -> NDArray[np.bool_]:
    """Full-volume Euclidean distance (mm) to the seed <= radius: the spec's ROI, computed the obvious way."""
    distance = ndimage.distance_transform_edt(~seed, sampling=spacing)
    return np.asarray(distance <= radius_mm)


def union_roi_oracle(case: Case, radius_mm: float = ROI_RADIUS_MM) -> NDArray[np.bool_]:
    """ROI of the default ``union`` mode: within ``radius_mm`` of (predicted foreground ∪ reference foreground)."""
    seed = (argmax64(case.probs) > 0) | (case.labels > 0)
    return roi_oracle(seed, case.spacing, radius_mm)


def entropy_oracle(probs: NDArray[np.floating]) -> NDArray[np.float64]:
    """Normalised predictive entropy with ``scipy.stats.entropy`` (natural log) divided by ln C."""
    p = np.asarray(probs, dtype=np.float64)
    return np.asarray(stats.entropy(p, axis=0) / math.log(p.shape[0]), dtype=np.float64)


def temperature_oracle(probs: NDArray[np.floating], temperature: float) -> NDArray[np.float64]:
    """softmax(ln p / T) in float64 (p > 0 assumed)."""
    return softmax64(np.log(np.asarray(probs, dtype=np.float64)) / temperature)


def ece_oracle(confidence: NDArray[np.floating], correct: NDArray[np.bool_], n_bins: int = 15) -> float:
    """ECE with an explicit loop over right-closed bins (m/M, (m+1)/M]; a confidence of exactly 0 is in bin 0."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=bool)
    total = 0.0
    for m in range(n_bins):
        in_bin = (conf > m / n_bins) & (conf <= (m + 1) / n_bins)
        if m == 0:
            in_bin |= conf == 0.0
        count = int(np.count_nonzero(in_bin))
        if count:
            accuracy = math.fsum(hit[in_bin].astype(np.float64)) / count
            mean_conf = math.fsum(conf[in_bin]) / count
            total += count / conf.size * abs(accuracy - mean_conf)
    return total


def top_label(
    probs: NDArray[np.floating], labels: NDArray[np.integer]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Top-label confidence and correctness of voxel probabilities (C, n) against labels (n,)."""
    p = np.asarray(probs, dtype=np.float64)
    return p.max(axis=0), np.argmax(p, axis=0) == labels


def budget_count(budget: Fraction, n: int) -> int:
    """ceil(b·n) in exact arithmetic."""
    return math.ceil(budget * n)
