"""The dashboard's cohort statistics: behind each cell of the cohort table a case-level bootstrap CI of the repeated
hold-out's number and whether the configuration is best, tied for best or neither in its column; and the comparison
page's p-value adjusted over the pairs shown (``pipeline.metrics.statistics``).

A column is one metric of one structure row group (``all foreground``, or a structure); its table row's DSC of the
``all foreground`` group is the mean foreground DSC (the registry's ``whole_case``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.metrics import registry
from pipeline.metrics.statistics import (
    DEFAULT_STATISTICS,
    Correction,
    Mark,
    StatisticsSettings,
    adjust_p_values,
    mark_best,
    repeat_mean_interval,
    wilcoxon_p,
)
from pipeline.store.cohort_numbers import ALL_FOREGROUND


@dataclass(frozen=True)
class CellStatistics:
    """One cell: the CI of its number, the cases it rests on, its mark, and against the column's top configuration
    the paired difference's CI and the multiplicity-adjusted p (None for the top itself)."""

    low: float
    high: float
    n: int
    mark: Mark
    versus_top: tuple[float, float, float] | None


Key = tuple[int, str, str]  # (configuration id, structure row group, metric shown in the column)


def _column_source(structure: str, metric: registry.Metric) -> str:
    """The stored metric a column shows on a row group (DSC of the whole case is the mean foreground DSC)."""
    return metric.whole_case if structure == ALL_FOREGROUND and metric.whole_case else metric.name


def cell_statistics(values: pd.DataFrame, metrics: list[registry.Metric],
                    settings: StatisticsSettings = DEFAULT_STATISTICS) -> dict[Key, CellStatistics]:
    """Every cell's statistics from the long per-case frame of ``pipeline.store.cohort_numbers.case_values``."""
    found: dict[Key, CellStatistics] = {}
    for (structure, stored), rows in values.groupby(["structure", "metric"], sort=False):
        for metric in metrics:
            if _column_source(str(structure), metric) != stored:
                continue
            found.update(_column(rows, str(structure), metric, settings))
    return found


def _column(rows: pd.DataFrame, structure: str, metric: registry.Metric,
            settings: StatisticsSettings) -> dict[Key, CellStatistics]:
    cases = sorted(rows["case"].unique())
    repeats = sorted(rows["repeat"].unique())
    per_case = rows.pivot_table(index="case", columns="configuration_id", values="value", aggfunc="mean").reindex(cases)
    marks = mark_best(per_case, metric.direction == "higher", settings) if metric.direction else None
    cells: dict[Key, CellStatistics] = {}
    for configuration, own in rows.groupby("configuration_id", sort=False):
        matrix = (own.pivot_table(index="repeat", columns="case", values="value", aggfunc="mean")
                  .reindex(index=repeats, columns=cases).to_numpy(dtype=np.float64))
        interval = repeat_mean_interval(matrix, settings)
        versus = None
        mark: Mark = ""
        if marks is not None:
            mark = marks.marks.get(str(configuration), "")
            if str(configuration) in marks.comparisons:
                comparison, p = marks.comparisons[str(configuration)]
                versus = (comparison.ci_low, comparison.ci_high, p)
        cells[(int(configuration), structure, metric.name)] = CellStatistics(
            interval.low, interval.high, interval.n, mark, versus)
    return cells


def family_adjusted_p(table: pd.DataFrame, a: int, b: int, family: list[int], correction: Correction
                      ) -> tuple[float, int]:
    """A − B's Wilcoxon p adjusted over every pair of ``family`` (per-case values: one column per configuration), and
    the number of pairs."""
    pairs = list(itertools.combinations(sorted({*family, a, b}), 2))
    raw = [wilcoxon_p(table[x], table[y]) if x in table and y in table else math.nan for x, y in pairs]
    adjusted = adjust_p_values(raw, correction)
    own = next(p for (x, y), p in zip(pairs, adjusted, strict=True) if {x, y} == {a, b})
    return float(own), len(pairs)
