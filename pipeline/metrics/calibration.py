"""Voxel-level calibration and uncertainty measures: normalised entropy, reliability bins / ECE, Brier score."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.metrics.kernels import reliability_sums
from pipeline.metrics.validation import check_same_length


def normalized_entropy(probs: NDArray[np.floating]) -> NDArray[np.floating]:
    """H = -Σ_c p_c ln p_c / ln C over axis 0 of ``probs`` shaped (C, ...); in [0, 1], same dtype, 0·ln 0 = 0."""
    n_classes = probs.shape[0]
    if n_classes < 2:
        raise ValueError(f"probs must have at least 2 classes on axis 0, got {probs.shape}")
    floor = np.finfo(probs.dtype).tiny
    total = np.zeros(probs.shape[1:], dtype=probs.dtype)
    term = np.empty_like(total)
    for c in range(n_classes):
        np.maximum(probs[c], floor, out=term)
        np.log(term, out=term)
        term *= probs[c]
        total -= term
    total *= np.asarray(1.0 / math.log(n_classes), dtype=total.dtype)
    # Rounding (a few ulp above 1 at uniform p) and inputs summing to 1 only within the accepted tolerance
    # (p = 1.0002 gives entr < 0) can leave [0, 1]: clip.
    np.clip(total, 0.0, 1.0, out=total)
    return total


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin sums of a reliability diagram, exact to pool over cases.

    Rows are groups: one row for top-label or foreground ECE, one per class for classwise ECE.
    Bin m (0-based) holds confidences in (m/M, (m+1)/M]; a confidence of exactly 0 goes to bin 0.

    Attributes:
        count: voxels per bin, shape (G, M), int64.
        sum_confidence: Σ confidence per bin, shape (G, M), float64.
        sum_correct: Σ [correct] per bin, shape (G, M), int64.
    """

    count: NDArray[np.int64]
    sum_confidence: NDArray[np.float64]
    sum_correct: NDArray[np.int64]

    @property
    def n_bins(self) -> int:
        """M, the number of equal-width bins."""
        return int(self.count.shape[1])

    def ece(self) -> float:
        """ECE = Σ_m |Σcorrect_m - Σconf_m| / n per group, averaged over groups (NaN for an empty group)."""
        totals = self.count.sum(axis=1)
        gaps = np.abs(self.sum_correct - self.sum_confidence).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.mean(gaps / totals))

    def accuracy(self) -> NDArray[np.float64]:
        """Fraction correct per bin, shape (G, M); NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_correct / self.count

    def mean_confidence(self) -> NDArray[np.float64]:
        """Mean confidence per bin, shape (G, M); NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum_confidence / self.count

    def __add__(self, other: ReliabilityBins) -> ReliabilityBins:
        if self.count.shape != other.count.shape:
            raise ValueError(f"cannot pool bins shaped {self.count.shape} and {other.count.shape}")
        return ReliabilityBins(
            self.count + other.count,
            self.sum_confidence + other.sum_confidence,
            self.sum_correct + other.sum_correct,
        )


def reliability_bins(
    confidence: NDArray[np.floating], correct: NDArray[np.bool_], n_bins: int = 15
) -> ReliabilityBins:
    """One-group reliability bins of ``confidence`` (n,) in [0, 1] against ``correct`` (n,) booleans.

    Equal-width bins on (0, 1], right-closed: (m/M, (m+1)/M] -> m, a confidence of exactly 0 -> bin 0;
    sums in float64 (a compiled single pass, :func:`pipeline.metrics.kernels.reliability_sums`).
    """
    check_same_length("confidence", confidence, "correct", correct)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    count, sum_conf, sum_correct = reliability_sums(confidence, correct, n_bins)
    return ReliabilityBins(count[None, :], sum_conf[None, :], sum_correct[None, :])


def stack_bins(groups: list[ReliabilityBins]) -> ReliabilityBins:
    """Stack one-group bins into a multi-group ReliabilityBins (rows in the given order)."""
    return ReliabilityBins(
        np.concatenate([g.count for g in groups]),
        np.concatenate([g.sum_confidence for g in groups]),
        np.concatenate([g.sum_correct for g in groups]),
    )


def expected_calibration_error(
    confidence: NDArray[np.floating], correct: NDArray[np.bool_], n_bins: int = 15
) -> float:
    """ECE = Σ_m (|B_m|/n) |acc(B_m) - conf(B_m)| with equal-width bins on (0, 1]; float64 accumulation."""
    return reliability_bins(confidence, correct, n_bins).ece()


def brier_score(probs: NDArray[np.floating], labels: NDArray[np.integer], foreground_only: bool = False) -> float:
    """Mean over voxels of Σ_c (p_c - [g = c])^2 for ``probs`` (C, n) and ``labels`` (n,); range 0..2.

    ``foreground_only`` sums over classes 1..C-1 only. Accumulates in float64.
    """
    if probs.ndim != 2:
        raise ValueError(f"probs must be shaped (C, n), got {probs.shape}")
    check_same_length("probs[0]", probs[0], "labels", labels)
    if labels.size == 0:
        raise ValueError("labels holds no voxel")
    first = 1 if foreground_only else 0
    total = 0.0
    for c in range(first, probs.shape[0]):
        diff = probs[c].astype(np.float64)
        diff -= labels == c
        total += float(np.dot(diff, diff))
    return total / labels.size
