"""Cohort statistics: the case-level bootstrap of the repeated hold-out's number against a plain loop, Holm and
Benjamini–Hochberg against hand computations and SciPy, and "best" only where the data separate it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control

from pipeline.metrics.cohort import paired_comparison, summarise_repeats
from pipeline.metrics.statistics import StatisticsSettings, adjust_p_values, mark_best, repeat_mean_interval


def _repeats(seed: int, repeats: int = 3, cases: int = 12) -> np.ndarray:
    """(repeats, cases): each repeat tests half the cases (NaN elsewhere)."""
    rng = np.random.default_rng(seed)
    values = np.full((repeats, cases), np.nan)
    for r in range(repeats):
        chosen = rng.permutation(cases)[: cases // 2]
        values[r, chosen] = rng.normal(0.7, 0.1, chosen.size)
    return values


def test_the_estimate_is_the_repeated_hold_outs_number() -> None:
    values = _repeats(1)
    rows = [{"configuration": "A", "repeat": r, "case": c, "m": values[r, c]}
            for r in range(values.shape[0]) for c in range(values.shape[1]) if not math.isnan(values[r, c])]
    summary = summarise_repeats(pd.DataFrame(rows), ["m"])
    interval = repeat_mean_interval(values)
    assert interval.estimate == pytest.approx(float(summary["m_mean"].iloc[0]), rel=1e-12)
    assert interval.low < interval.estimate < interval.high
    assert interval.n == int(np.sum(~np.isnan(values).all(axis=0)))


def test_the_bootstrap_resamples_cases_with_all_their_repeats() -> None:
    values = _repeats(2)
    settings = StatisticsSettings(n_bootstrap=300, seed=7)
    interval = repeat_mean_interval(values, settings)
    cases = np.flatnonzero(~np.isnan(values).all(axis=0))
    kept = values[:, cases]
    draws = np.random.default_rng(7).integers(0, cases.size, size=(300, cases.size))
    statistics = []
    for draw in draws:  # the plain definition: duplicate the drawn cases, then mean over repeats of repeat means
        sample = kept[:, draw]
        per_repeat = [np.nanmean(row) for row in sample if not np.isnan(row).all()]
        statistics.append(np.mean(per_repeat))
    low, high = np.quantile(statistics, [0.025, 0.975])
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)


def test_more_cases_give_a_narrower_interval_and_nothing_gives_nan() -> None:
    few = repeat_mean_interval(_repeats(3, cases=10))
    many = repeat_mean_interval(_repeats(3, cases=200))
    assert many.high - many.low < 0.5 * (few.high - few.low)
    empty = repeat_mean_interval(np.full((2, 3), np.nan))
    assert empty.n == 0 and math.isnan(empty.estimate)


def test_holm_and_benjamini_hochberg() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06,
    # 0.06, back in the original order
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(adjust_p_values(p, "bh"), false_discovery_control(p, method="bh"), rtol=1e-12)
    assert adjust_p_values([0.9, 0.8], "holm").tolist() == [1.0, 1.0]
    with_nan = adjust_p_values([0.01, math.nan, 0.02], "holm")
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]].tolist() == pytest.approx([0.02, 0.02])


def test_best_only_where_the_data_separate_it() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.05, 40)
    clear = pd.DataFrame({"A": base + 0.1, "B": base, "C": base - 0.05})
    marks = mark_best(clear, higher_is_better=True)
    assert marks.marks == {"A": "best", "B": "", "C": ""} and marks.top == "A"
    assert all(c.ci_low > 0 for c, _ in marks.comparisons.values())
    close = pd.DataFrame({"A": base + rng.normal(0, 0.02, 40), "B": base + rng.normal(0, 0.02, 40), "C": base - 0.2})
    assert sorted(k for k, v in mark_best(close, higher_is_better=True).marks.items() if v == "tied") == ["A", "B"]
    lower = mark_best(pd.DataFrame({"A": base, "B": base + 0.1}), higher_is_better=False)
    assert lower.marks == {"A": "best", "B": ""}


def test_best_marks_use_the_paired_bootstrap_of_the_comparison_page() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"A": rng.normal(0.7, 0.05, 25), "B": rng.normal(0.65, 0.05, 25)})
    settings = StatisticsSettings(n_bootstrap=500, seed=3)
    (comparison, _), = mark_best(frame, higher_is_better=True, settings=settings).comparisons.values()
    oracle = paired_comparison(frame["A"].to_numpy(), frame["B"].to_numpy(), n_bootstrap=500, seed=3)
    assert (comparison.ci_low, comparison.ci_high) == pytest.approx((oracle.ci_low, oracle.ci_high), rel=1e-12)
    assert comparison.wilcoxon_p == pytest.approx(oracle.wilcoxon_p) and comparison.n == oracle.n == 25
