"""Cohort statistics a physicist can defend: case-level bootstrap CIs of the repeated hold-out's numbers, multiplicity
corrections over the comparisons shown, and "best" only where the data show it.

- :func:`repeat_mean_interval` — the cohort number of the repeated hold-out (mean over repeats of each repeat's mean
  over its test cases) with a percentile bootstrap CI that resamples *cases* (a case and all its repeats move
  together), so the interval reflects how many patients there are, not how many overlapping splits were drawn.
- :func:`adjust_p_values` — Holm's step-down (family-wise error) or Benjamini–Hochberg (false discovery rate) over
  a family of p-values.
- :func:`group_versus_rest` — per group of cases (a scanner): the difference of its mean from the other cases'
  mean with a case bootstrap CI (cases resampled within the group and within the rest); a group "differs" where
  the CI excludes 0.
- :func:`mark_best` — per column: the configuration with the best mean is "best" only when its paired difference to
  every other configuration has a bootstrap CI excluding 0 in its favour and a multiplicity-adjusted Wilcoxon p below
  alpha; otherwise it and every configuration it cannot be told apart from are "tied".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import false_discovery_control, wilcoxon

from pipeline.metrics.cohort import PairedComparison

Correction = Literal["holm", "bh"]
Mark = Literal["best", "tied", ""]


@dataclass(frozen=True)
class StatisticsSettings:
    """How cohort numbers are summarised and compared.

    Attributes:
        confidence: level of every bootstrap interval (0.95).
        n_bootstrap: resamples of cases per interval (seeded: the same store gives the same intervals).
        seed: the resampling seed.
        correction: ``holm`` (default; family-wise) or ``bh`` (Benjamini–Hochberg; false discovery rate) over the
            comparisons shown together.
        alpha: the significance level the adjusted p-values are held against.
    """

    confidence: float = 0.95
    n_bootstrap: int = 2000
    seed: int = 0
    correction: Correction = "holm"
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1 or not 0 < self.alpha < 1:
            raise ValueError(f"confidence and alpha must be in (0, 1), got {self.confidence}, {self.alpha}")
        if self.n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be >= 1, got {self.n_bootstrap}")
        if self.correction not in ("holm", "bh"):
            raise ValueError(f"correction must be 'holm' or 'bh', got {self.correction!r}")


DEFAULT_STATISTICS = StatisticsSettings()


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap CI; ``n`` is the number of cases it rests on."""

    estimate: float
    low: float
    high: float
    n: int


def _repeat_means(weights: NDArray[np.float64], values: NDArray[np.float64], tested: NDArray[np.bool_]
                  ) -> NDArray[np.float64]:
    """Mean over repeats of the weighted per-repeat means; ``weights`` (B, cases) → (B,)."""
    filled = np.where(tested, values, 0.0)
    sums = weights @ filled.T  # (B, repeats)
    counts = weights @ tested.T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_repeat = np.where(counts > 0, sums / counts, np.nan)
    return np.nanmean(per_repeat, axis=1)


def bootstrap_weights(n_cases: int, settings: StatisticsSettings = DEFAULT_STATISTICS) -> NDArray[np.float64]:
    """(n_bootstrap, n_cases) multiplicities of seeded case resamples: row b counts how often each case was drawn.

    Weighted means over these rows are the bootstrap's resampled means; sharing one matrix among the cells of a table
    (same cases) pairs their resamples and costs one matrix product per cell.
    """
    rng = np.random.default_rng(settings.seed)
    draws = rng.integers(0, n_cases, size=(settings.n_bootstrap, n_cases))
    weights = np.zeros((settings.n_bootstrap, n_cases))
    np.add.at(weights, (np.arange(settings.n_bootstrap)[:, None], draws), 1.0)
    return weights


def repeat_mean_interval(values: ArrayLike, settings: StatisticsSettings = DEFAULT_STATISTICS) -> Interval:
    """The repeated hold-out's number and its case-level bootstrap CI.

    Args:
        values: shaped (repeats, cases): the metric of each case in each repeat it was a test case of, NaN where it
            was not (or where the metric is undefined).
        settings: level, resamples and seed.

    Returns:
        The mean over repeats of the per-repeat means (repeats without any value skipped) and the percentile CI of
        that statistic over case resamples (each case drawn with all its repeats); NaN with no value at all.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"values must be shaped (repeats, cases), got {matrix.shape}")
    tested = ~np.isnan(matrix)
    cases = np.flatnonzero(tested.any(axis=0))
    if cases.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    matrix, tested = matrix[:, cases], tested[:, cases]
    estimate = float(_repeat_means(np.ones((1, cases.size)), matrix, tested)[0])
    resampled = _repeat_means(bootstrap_weights(cases.size, settings), matrix, tested)
    tail = (1 - settings.confidence) / 2
    low, high = np.nanquantile(resampled, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), int(cases.size))


@dataclass(frozen=True)
class GroupDifference:
    """A group's mean minus the other cases' mean, with its bootstrap CI and how many cases each side has."""

    group: str
    estimate: float
    low: float
    high: float
    n_group: int
    n_rest: int

    @property
    def differs(self) -> bool:
        """The CI excludes 0 (never for a side of fewer than :data:`MIN_GROUP_CASES` cases or an undefined CI)."""
        sized = min(self.n_group, self.n_rest) >= MIN_GROUP_CASES
        return sized and not math.isnan(self.low) and (self.low > 0 or self.high < 0)


MIN_GROUP_CASES = 2  # a group (or rest) of one case has no spread of its own to resample: never flagged


def group_versus_rest(values: ArrayLike, groups: Sequence[str], settings: StatisticsSettings = DEFAULT_STATISTICS
                      ) -> list[GroupDifference]:
    """Each group's mean minus the mean of every other case, with a percentile bootstrap CI.

    Args:
        values: one value per case (a case's metric, its mean over the repeats it was tested in); NaN cases are left
            out.
        groups: each case's group (a scanner, ``unknown``), as long as ``values``.
        settings: level, resamples and seed.

    The cases of the group and of the rest are resampled separately (seeded, so the same store gives the same CI);
    groups in sorted order; NaN where a side has no case.
    """
    data = np.asarray(values, dtype=np.float64)
    labels = np.asarray(groups, dtype=object)
    if data.shape != labels.shape or data.ndim != 1:
        raise ValueError(f"values and groups must be 1-D of one length, got {data.shape} and {labels.shape}")
    known = ~np.isnan(data)
    data, labels = data[known], labels[known]
    tail = (1 - settings.confidence) / 2
    found = []
    for group in sorted({str(g) for g in labels}):
        inside, rest = data[labels == group], data[labels != group]
        if rest.size == 0:
            found.append(GroupDifference(group, math.nan, math.nan, math.nan, int(inside.size), 0))
            continue
        resampled = (bootstrap_weights(inside.size, settings) @ inside / inside.size
                     - bootstrap_weights(rest.size, replace(settings, seed=settings.seed + 1)) @ rest / rest.size)
        low, high = np.quantile(resampled, [tail, 1 - tail])
        found.append(GroupDifference(group, float(inside.mean() - rest.mean()), float(low), float(high),
                                     int(inside.size), int(rest.size)))
    return found


def adjust_p_values(p_values: Sequence[float], correction: Correction = "holm") -> NDArray[np.float64]:
    """Multiplicity-adjusted p-values of one family (NaN entries stay NaN and do not count in the family)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    known = ~np.isnan(p)
    if not known.any():
        return adjusted
    if correction == "bh":
        adjusted[known] = false_discovery_control(p[known], method="bh")
        return adjusted
    values = p[known]
    order = np.argsort(values, kind="stable")
    m = values.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * values[order])
    holm = np.empty(m)
    holm[order] = np.minimum(stepped, 1.0)
    adjusted[known] = holm
    return adjusted


def wilcoxon_p(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided Wilcoxon signed-rank p of paired values (pairs with a NaN dropped); NaN with fewer than 2 pairs or
    no difference."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    difference = difference[~np.isnan(difference)]
    if difference.size < 2 or not np.any(difference != 0):
        return math.nan
    return float(wilcoxon(difference).pvalue)


@dataclass(frozen=True)
class BestMarks:
    """Per configuration: ``best``, ``tied`` (for best) or ``""``; and each comparison with the top one: its paired
    difference top − other, oriented so that a positive difference favours the top one, and the adjusted p-value."""

    marks: dict[str, Mark]
    top: str | None
    comparisons: dict[str, tuple[PairedComparison, float]]


def mark_best(per_case: pd.DataFrame, higher_is_better: bool,
              settings: StatisticsSettings = DEFAULT_STATISTICS) -> BestMarks:
    """Which configuration is best on one metric, if the data show it.

    Args:
        per_case: one row per case, one column per configuration: each case's value (its mean over the repeats it
            was tested in); NaN where missing.
        higher_is_better: the metric's direction.
        settings: CI level, resamples, seed, correction and alpha.

    The configuration with the best mean is compared with every other on their shared cases: a percentile bootstrap
    CI of the mean paired difference (the same case resamples for every comparison) and the Wilcoxon signed-rank
    p-value, adjusted over these comparisons. It is ``best`` when every difference favours it with a CI excluding 0
    and an adjusted p below alpha; otherwise it and each configuration it cannot be told apart from are ``tied``.
    """
    means = per_case.mean(axis=0, skipna=True).dropna()
    marks: dict[str, Mark] = {str(c): "" for c in per_case.columns}
    if means.empty:
        return BestMarks(marks, None, {})
    top = str(means.idxmax() if higher_is_better else means.idxmin())
    others = [str(c) for c in means.index if str(c) != top]
    sign = 1.0 if higher_is_better else -1.0
    values = per_case.to_numpy(dtype=np.float64)
    columns = [str(c) for c in per_case.columns]
    differences = sign * (values[:, [columns.index(top)]] - values[:, [columns.index(o) for o in others]])
    shared = ~np.isnan(differences)
    weights = bootstrap_weights(values.shape[0], settings)
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = (weights @ np.where(shared, differences, 0.0)) / (weights @ shared.astype(np.float64))
    tail = (1 - settings.confidence) / 2
    tests: dict[str, PairedComparison] = {}
    for k, other in enumerate(others):
        paired = differences[shared[:, k], k]
        if paired.size == 0:
            tests[other] = PairedComparison(0, math.nan, math.nan, math.nan, math.nan)
            continue
        low, high = np.nanquantile(resampled[:, k], [tail, 1 - tail])
        p = wilcoxon_p(paired, np.zeros_like(paired))
        tests[other] = PairedComparison(int(paired.size), float(paired.mean()), float(low), float(high), p)
    adjusted = adjust_p_values([tests[o].wilcoxon_p for o in others], settings.correction)
    comparisons = {o: (tests[o], float(p)) for o, p in zip(others, adjusted, strict=True)}
    apart = {o: tests[o].ci_low > 0 and p < settings.alpha for o, (_, p) in comparisons.items()}
    if all(apart.values()):
        marks[top] = "best"
    else:
        marks[top] = "tied"
        marks.update({o: "tied" for o, separated in apart.items() if not separated})
    return BestMarks(marks, top, comparisons)
