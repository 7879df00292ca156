"""Cohort aggregation: mean ± SD over repeats, pooled reliability bins, paired comparisons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from pipeline.metrics.calibration import ReliabilityBins, reliability_bins
from pipeline.metrics.cohort import paired_comparison, pooled_bins, summarise_repeats
from pipeline.metrics.suite import evaluate_case
from tests.metrics.cases import ece_oracle, structured_case, top_label, union_roi_oracle

# --- summarise_repeats -----------------------------------------------------------------------------------------

# Two configurations x three repeats, unequal numbers of test cases per repeat, one NaN metric value.
_VALUES: dict[tuple[str, int], list[float]] = {
    ("A", 0): [0.8, 0.6],
    ("A", 1): [0.9, 0.7, 0.5],
    ("A", 2): [0.4],
    ("B", 0): [0.1, 0.2, 0.3, math.nan],
    ("B", 1): [0.5],
    ("B", 2): [0.6, 0.8],
}


def _cases_frame() -> pd.DataFrame:
    rows = [
        {"configuration": config, "repeat": repeat, "case": f"p{i}", "dsc": value, "ece": value / 10}
        for (config, repeat), values in _VALUES.items()
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3)  # row order must not matter


def test_summarise_repeats_matches_a_hand_computation() -> None:
    summary = summarise_repeats(_cases_frame(), ["dsc", "ece"])
    # A: repeat means 0.7, 0.7, 0.4 -> mean 0.6, SD sqrt((0.1² + 0.1² + 0.2²) / 2) = sqrt(0.03)
    # B: repeat means 0.2 (NaN skipped), 0.5, 0.7 -> mean 1.4/3, SD sqrt(Σ(x - 1.4/3)² / 2)
    b_mean = 1.4 / 3
    b_sd = math.sqrt(((0.2 - b_mean) ** 2 + (0.5 - b_mean) ** 2 + (0.7 - b_mean) ** 2) / 2)
    assert list(summary.columns) == [
        "configuration",
        "dsc_mean",
        "dsc_sd",
        "ece_mean",
        "ece_sd",
        "n_repeats",
        "n_cases",
    ]
    assert summary["configuration"].tolist() == ["A", "B"]
    np.testing.assert_allclose(summary["dsc_mean"], [0.6, b_mean], rtol=1e-12)
    np.testing.assert_allclose(summary["dsc_sd"], [math.sqrt(0.03), b_sd], rtol=1e-12)
    np.testing.assert_allclose(summary["ece_mean"], [0.06, b_mean / 10], rtol=1e-12)
    np.testing.assert_allclose(summary["ece_sd"], [math.sqrt(0.03) / 10, b_sd / 10], rtol=1e-12)
    assert summary["n_repeats"].tolist() == [3, 3]
    assert summary["n_cases"].tolist() == [6, 7]  # case rows, the NaN row included


def test_summarise_repeats_with_two_grouping_columns_and_a_single_repeat() -> None:
    frame = _cases_frame()
    frame["structure"] = np.where(frame["case"] == "p0", "spleen", "nodes")
    summary = summarise_repeats(frame, ["dsc"], by=("configuration", "structure")).set_index(
        ["configuration", "structure"]
    )
    # A/nodes: repeat 0 -> 0.6; repeat 1 -> (0.7 + 0.5)/2 = 0.6; repeat 2 has no such row.
    assert summary.loc[("A", "nodes"), "dsc_mean"] == pytest.approx(0.6)
    assert summary.loc[("A", "nodes"), "dsc_sd"] == pytest.approx(0.0, abs=1e-15)
    assert summary.loc[("A", "nodes"), "n_repeats"] == 2
    assert summary.loc[("A", "nodes"), "n_cases"] == 3
    # B/spleen: 0.1, 0.5, 0.6 -> mean 0.4
    assert summary.loc[("B", "spleen"), "dsc_mean"] == pytest.approx(0.4)
    assert summary.loc[("B", "spleen"), "dsc_sd"] == pytest.approx(math.sqrt((0.09 + 0.01 + 0.04) / 2))
    single = summarise_repeats(frame[frame["repeat"] == 1], ["dsc"])
    assert single["n_repeats"].tolist() == [1, 1]
    assert single["dsc_sd"].isna().all()  # the SD of one repeat is undefined
    np.testing.assert_allclose(single["dsc_mean"], [0.7, 0.5])


# --- pooled_bins -----------------------------------------------------------------------------------------------


def test_pooled_bins_are_exact_sums_not_averages_of_averages() -> None:
    first = reliability_bins(np.array([0.95, 0.95]), np.array([True, False]), 15)
    second = reliability_bins(np.array([0.95, 0.55]), np.array([True, True]), 15)
    pooled = pooled_bins([first, second])
    assert pooled.count[0, 14] == 3 and pooled.count[0, 8] == 1 and int(pooled.count.sum()) == 4
    assert pooled.sum_correct[0, 14] == 2 and pooled.sum_correct[0, 8] == 1
    assert pooled.sum_confidence[0, 14] == pytest.approx(2.85)
    # (|2 - 2.85| + |1 - 0.55|) / 4 = 0.325, whereas the mean of the per-case ECEs is (0.45 + 0.25) / 2 = 0.35.
    assert pooled.ece() == pytest.approx(0.325)
    assert first.ece() == pytest.approx(0.45) and second.ece() == pytest.approx(0.25)
    np.testing.assert_allclose(pooled.accuracy()[0, [8, 14]], [1.0, 2 / 3])
    np.testing.assert_allclose(pooled.mean_confidence()[0, [8, 14]], [0.55, 0.95])
    assert np.isnan(pooled.accuracy()[0, 0])  # empty bin


def test_pooled_bins_of_evaluated_cases_equal_the_bins_of_all_their_roi_voxels() -> None:
    cases = [structured_case(seed, 3, shape=(8, 24, 24), n_structures=2) for seed in range(3)]
    bins = [evaluate_case(c.probs, c.labels, c.spacing).metrics.reliability for c in cases]
    confidence, correct = zip(
        *(top_label(c.probs[:, union_roi_oracle(c)], c.labels[union_roi_oracle(c)]) for c in cases), strict=True
    )
    all_conf, all_correct = np.concatenate(confidence), np.concatenate(correct)
    pooled = pooled_bins(iter(bins))  # any iterable, consumed once
    direct = reliability_bins(all_conf, all_correct, 15)
    assert np.array_equal(pooled.count, direct.count)
    assert np.array_equal(pooled.sum_correct, direct.sum_correct)
    assert pooled.ece() == pytest.approx(ece_oracle(all_conf, all_correct), abs=1e-12)


def test_pooled_bins_rejects_empty_and_mismatched_input() -> None:
    with pytest.raises(ValueError, match="bins is empty"):
        pooled_bins([])
    ten = reliability_bins(np.array([0.5]), np.array([True]), 10)
    fifteen = reliability_bins(np.array([0.5]), np.array([True]), 15)
    with pytest.raises(ValueError, match="cannot pool bins"):
        pooled_bins([ten, fifteen])
    assert isinstance(pooled_bins([ten]), ReliabilityBins)


# --- paired_comparison -----------------------------------------------------------------------------------------


def test_paired_comparison_mean_difference_ci_and_wilcoxon() -> None:
    a = np.array([0.5, 0.25, 1.0, 0.75, 0.625, 0.875, 0.125, 0.5])
    b = np.array([0.25, 0.5, 0.5, 0.25, 0.5, 0.5, 0.25, 0.25])
    diff = a - b  # binary fractions: the mean is exact
    result = paired_comparison(a, b, n_bootstrap=2000, seed=7)
    assert result.n == 8
    assert result.mean_difference == 1.625 / 8  # (0.25 - 0.25 + 0.5 + 0.5 + 0.125 + 0.375 - 0.125 + 0.25) / 8
    assert result.ci_low <= result.mean_difference <= result.ci_high
    assert result.ci_low < result.ci_high
    assert diff.min() <= result.ci_low and result.ci_high <= diff.max()
    assert result.wilcoxon_p == float(wilcoxon(diff).pvalue)
    assert paired_comparison(list(a), list(b), n_bootstrap=2000, seed=7) == result  # deterministic, lists accepted
    other = paired_comparison(a, b, n_bootstrap=2000, seed=8)
    assert other.mean_difference == result.mean_difference and other.wilcoxon_p == result.wilcoxon_p
    assert (other.ci_low, other.ci_high) != (result.ci_low, result.ci_high)  # the seed drives the bootstrap only


def test_paired_comparison_ci_has_the_normal_width_for_many_cases() -> None:
    # Percentile bootstrap of a mean of 400 i.i.d. differences: close to mean ± 1.96 SD/sqrt(n).
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.05, 400)
    b = a - rng.normal(0.01, 0.02, 400)
    result = paired_comparison(a, b, seed=1)
    half_width = 1.96 * float(np.std(a - b, ddof=1)) / math.sqrt(400)
    assert result.ci_high - result.ci_low == pytest.approx(2 * half_width, rel=0.1)
    assert (result.ci_low + result.ci_high) / 2 == pytest.approx(result.mean_difference, abs=half_width * 0.1)
    assert result.wilcoxon_p == pytest.approx(float(wilcoxon(a - b).pvalue), rel=1e-12)
    assert result.wilcoxon_p < 1e-6


def test_paired_comparison_drops_nan_pairs() -> None:
    a = [0.9, math.nan, 0.7, 0.65, 0.8, 0.4]
    b = [0.8, 0.5, math.nan, 0.6, 0.55, 0.5]
    result = paired_comparison(a, b, n_bootstrap=500)
    kept = np.array([0.9 - 0.8, 0.65 - 0.6, 0.8 - 0.55, 0.4 - 0.5])
    assert result.n == 4
    assert result.mean_difference == pytest.approx(float(kept.mean()), abs=1e-15)
    assert result.wilcoxon_p == pytest.approx(float(wilcoxon(kept).pvalue), abs=1e-15)
    assert paired_comparison(np.array(a)[[0, 3, 4, 5]], np.array(b)[[0, 3, 4, 5]], n_bootstrap=500) == result


def test_paired_comparison_degenerate_inputs() -> None:
    same = paired_comparison([0.5, 0.7, 0.9], [0.5, 0.7, 0.9])
    assert same.n == 3 and same.mean_difference == 0.0
    assert same.ci_low == 0.0 and same.ci_high == 0.0
    assert math.isnan(same.wilcoxon_p)  # every difference is zero
    single = paired_comparison([0.9], [0.5])
    assert single.n == 1 and single.mean_difference == pytest.approx(0.4)
    assert math.isnan(single.wilcoxon_p)  # n < 2
    empty = paired_comparison([math.nan, 0.2], [0.1, math.nan])
    assert empty.n == 0
    assert all(math.isnan(v) for v in (empty.mean_difference, empty.ci_low, empty.ci_high, empty.wilcoxon_p))
