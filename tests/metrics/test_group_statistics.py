"""The per-scanner flag's statistics: a group's mean minus the rest's, with a case bootstrap CI that resamples the
group and the rest separately; "differs" only where that CI excludes 0 and both sides have at least two cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics.statistics import MIN_GROUP_CASES, StatisticsSettings, bootstrap_weights, group_versus_rest


def test_the_estimate_is_the_difference_of_means_and_the_ci_a_plain_loop() -> None:
    values = np.array([0.10, 0.12, 0.11, 0.05, 0.06, 0.04, 0.05])
    groups = ["B", "B", "B", "A", "A", "A", "unknown"]
    settings = StatisticsSettings(n_bootstrap=500, seed=3)

    found = {d.group: d for d in group_versus_rest(values, groups, settings)}

    assert list(found) == ["A", "B", "unknown"]
    b = found["B"]
    assert b.estimate == pytest.approx(0.11 - np.mean([0.05, 0.06, 0.04, 0.05]))
    assert (b.n_group, b.n_rest) == (3, 4)
    inside, rest = values[:3], values[3:]
    draws_in = bootstrap_weights(3, settings)
    draws_rest = bootstrap_weights(4, StatisticsSettings(n_bootstrap=500, seed=4))
    loop = [(w_in @ inside) / 3 - (w_rest @ rest) / 4 for w_in, w_rest in zip(draws_in, draws_rest, strict=True)]
    assert (b.low, b.high) == pytest.approx(tuple(np.quantile(loop, [0.025, 0.975])))


def test_a_clearly_different_group_differs_and_a_like_one_does_not() -> None:
    rng = np.random.default_rng(0)
    calibrated = rng.normal(0.05, 0.01, 8)
    worse = rng.normal(0.12, 0.01, 4)
    like = np.array([0.04, 0.06, 0.05, 0.05]) + calibrated.mean() - 0.05  # the same mean as the rest

    shifted = {d.group: d for d in group_versus_rest(np.r_[calibrated, worse], ["A"] * 8 + ["B"] * 4)}
    same = {d.group: d for d in group_versus_rest(np.r_[calibrated, like], ["A"] * 8 + ["B"] * 4)}

    assert shifted["B"].differs and shifted["B"].low > 0 and shifted["A"].differs and shifted["A"].high < 0
    assert not same["B"].differs and same["B"].low < 0 < same["B"].high
    assert same["B"].estimate == pytest.approx(0.0, abs=1e-12)


def test_a_single_case_undefined_values_and_a_lone_group() -> None:
    values = [0.05, 0.06, 0.05, 0.30, math.nan]
    found = {d.group: d for d in group_versus_rest(values, ["A", "A", "A", "B", "C"])}

    assert found["B"].n_group == 1 < MIN_GROUP_CASES and not found["B"].differs, "one case: never flagged"
    assert "C" not in found, "a case without a value is left out"
    lone = group_versus_rest([0.1, 0.2], ["A", "A"])
    assert len(lone) == 1 and lone[0].n_rest == 0 and math.isnan(lone[0].estimate) and not lone[0].differs
    with pytest.raises(ValueError, match="one length"):
        group_versus_rest([0.1, 0.2], ["A"])
