"""Cohort aggregation: repeat means, mean ± SD over repeats, pooled reliability bins, paired comparisons."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import wilcoxon

from pipeline.metrics.calibration import ReliabilityBins


def summarise_repeats(
    cases: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str] = ("configuration",),
    repeat: str = "repeat",
) -> pd.DataFrame:
    """Mean ± SD over repeats of the per-repeat mean over test cases.

    Args:
        cases: one row per (repeat, test case, ``by`` groups) with the metric columns.
        metrics: the metric columns to summarise; NaN rows are skipped in the per-repeat means.
        by: grouping columns (configuration, structure, …).
        repeat: the repeat column.

    Returns:
        One row per group with, for each metric m: ``m_mean`` (mean over repeats), ``m_sd`` (sample SD over
        repeats, ddof = 1; NaN with one repeat), and ``n_repeats`` and ``n_cases`` (case rows in the group).
    """
    missing = [c for c in (*by, repeat, *metrics) if c not in cases.columns]
    if missing:
        raise ValueError(f"cases lacks the columns {missing}")
    keys = list(by)
    per_repeat = cases.groupby([*keys, repeat], sort=True)[list(metrics)].mean()
    grouped = per_repeat.groupby(level=list(range(len(keys))), sort=True)
    summary = pd.concat(
        {"mean": grouped.mean(), "sd": grouped.std(ddof=1)}, axis=1
    )
    summary.columns = [f"{metric}_{stat}" for stat, metric in summary.columns]
    summary = summary[[f"{m}_{s}" for m in metrics for s in ("mean", "sd")]]
    summary["n_repeats"] = grouped.size()
    summary["n_cases"] = cases.groupby(keys, sort=True).size()
    return summary.reset_index()


def pooled_bins(bins: Iterable[ReliabilityBins]) -> ReliabilityBins:
    """Sum the reliability bins of many cases: the exact cohort reliability diagram and pooled ECE."""
    total: ReliabilityBins | None = None
    for item in bins:
        total = item if total is None else total + item
    if total is None:
        raise ValueError("bins is empty: nothing to pool")
    return total


@dataclass(frozen=True)
class PairedComparison:
    """Configuration A minus configuration B over the same cases.

    Attributes:
        n: pairs used (pairs with a NaN on either side are dropped).
        mean_difference: mean of a - b. ci_low, ci_high: percentile bootstrap CI of that mean.
        wilcoxon_p: two-sided Wilcoxon signed-rank p-value (NaN when every difference is zero or n < 2).
    """

    n: int
    mean_difference: float
    ci_low: float
    ci_high: float
    wilcoxon_p: float


def paired_comparison(
    a: ArrayLike,
    b: ArrayLike,
    n_bootstrap: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compare per-case values ``a`` and ``b`` (same cases, same order, shape (n,)).

    Percentile bootstrap of the mean difference with ``n_bootstrap`` seeded resamples of cases, and the
    Wilcoxon signed-rank test (scipy, zero differences dropped by its default ``zero_method='wilcox'``).
    """
    first = np.asarray(a, dtype=np.float64)
    second = np.asarray(b, dtype=np.float64)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(f"a and b must be 1-D of equal length, got {first.shape} and {second.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    keep = ~(np.isnan(first) | np.isnan(second))
    diff = first[keep] - second[keep]
    n = int(diff.size)
    if n == 0:
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(n_bootstrap, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    p_value = math.nan
    if n >= 2 and np.any(diff != 0):
        p_value = float(wilcoxon(diff).pvalue)
    return PairedComparison(n, float(diff.mean()), float(low), float(high), p_value)
