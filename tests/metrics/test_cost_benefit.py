"""The cost–benefit core: intervals per configuration, the Pareto front, the cheapest configuration within the best's
CI, the words and the table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.metrics.cost_benefit import (
    CostBenefit,
    benefit_intervals,
    cheapest_within_best,
    cost_axis,
    table,
    verdict,
    with_front,
)
from pipeline.metrics.statistics import Interval, StatisticsSettings, repeat_mean_interval


def _row(name: str, position: int, passes: float, seconds: float, ueo: tuple[float, float, float]) -> CostBenefit:
    nothing = Interval(math.nan, math.nan, math.nan, 0)
    return CostBenefit(name, position, passes, seconds, "cpu",
                       {"ueo_auc": Interval(*ueo, 6), "ece": nothing, "dsc_mean_fg": nothing})


ROWS = [
    _row("Base", 0, 1, 0.3, (0.10, 0.08, 0.12)),
    _row("TTA", 1, 8, 1.9, (0.15, 0.12, 0.18)),
    _row("DE+TTA", 2, 24, 5.5, (0.17, 0.14, 0.20)),
    _row("CE1", 3, 1, 0.35, (0.09, 0.07, 0.11)),
    _row("DE2+TTA4", 4, 8, 2.2, (0.145, 0.12, 0.17)),
]


def test_the_front_holds_the_configurations_no_other_beats_on_both_cost_and_ueo_auc() -> None:
    front = {r.configuration for r in with_front(ROWS) if r.pareto}
    assert front == {"Base", "TTA", "DE+TTA"}


def test_the_cheapest_within_the_best_ci_is_named_with_its_cost() -> None:
    best, cheapest = cheapest_within_best(ROWS)  # type: ignore[misc]
    assert (best.configuration, cheapest.configuration) == ("DE+TTA", "TTA")
    words = verdict(with_front(ROWS))
    assert "Best UEO-AUC: DE+TTA" in words
    assert "The cheapest configuration whose UEO-AUC is within that CI: TTA" in words
    assert "TTA 0.150 (8 forward passes, 1.90 s per case, 35 % of the best's time)." in words


def test_without_measured_seconds_the_front_and_the_choice_use_passes() -> None:
    rows = [_row(r.configuration, r.position, r.passes, math.nan, (r.benefits["ueo_auc"].estimate,
                                                                   r.benefits["ueo_auc"].low,
                                                                   r.benefits["ueo_auc"].high)) for r in ROWS]
    assert cost_axis(rows) == "passes"
    assert cheapest_within_best(rows)[1].configuration == "TTA"  # type: ignore[index]
    assert "s per case" not in verdict(rows)


def test_the_best_alone_within_its_ci_is_said_so() -> None:
    rows = [_row("Base", 0, 1, 0.3, (0.10, 0.09, 0.11)), _row("TTA", 1, 8, 1.9, (0.20, 0.18, 0.22))]
    assert "No cheaper configuration" in verdict(rows)
    assert "no reference" in verdict([])


def test_intervals_are_the_repeated_hold_outs_case_bootstrap() -> None:
    rng = np.random.default_rng(1)
    records = [{"repeat": r, "case": f"c{c}", "configuration": name, "ueo_auc": rng.random(), "ece": rng.random(),
                "dsc_mean_fg": rng.random()} for name in ("Base", "TTA") for r in range(3) for c in range(5)
               if (r + c) % 2 == 0]
    cases = pd.DataFrame.from_records(records)
    settings = StatisticsSettings(n_bootstrap=200)
    found = benefit_intervals(cases, settings=settings)
    base = cases[cases["configuration"] == "Base"].pivot(index="repeat", columns="case", values="ece")
    assert found["Base"]["ece"] == repeat_mean_interval(base.to_numpy(), settings)
    assert found["TTA"]["ueo_auc"].n == 5


def test_the_table_has_cost_estimates_cis_and_the_front() -> None:
    frame = table(with_front(ROWS))
    assert list(frame.columns[:4]) == ["configuration", "forward_passes", "seconds_per_case", "device"]
    assert {"ueo_auc_low", "ece_high", "dsc_mean_fg", "n_cases", "pareto"} <= set(frame.columns)
    assert not frame.set_index("configuration").loc["CE1", "pareto"]
