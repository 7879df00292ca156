"""What each configuration costs and buys: per configuration the cohort number of UEO-AUC, ECE and DSC (the
repeated hold-out's mean with its case-bootstrap CI, :func:`pipeline.metrics.statistics.repeat_mean_interval`)
beside its forward passes and measured inference seconds per case; the Pareto front on (seconds, UEO-AUC); and the
cheapest configuration whose UEO-AUC lies within the CI of the best's.

A configuration's seconds are what it would cost alone (:mod:`pipeline.inference.pooling`): configurations that share
passes are not cheaper for it. The front uses seconds per case when every configuration has them (results stored
before migration 0016 have none) and forward passes otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.metrics import registry
from pipeline.metrics.statistics import DEFAULT_STATISTICS, Interval, StatisticsSettings, repeat_mean_interval

BENEFITS = ("ueo_auc", "ece", "dsc_mean_fg")
PRIMARY = "ueo_auc"


@dataclass(frozen=True)
class CostBenefit:
    """One configuration: its cost per case (mean over the cases counted), its benefits and whether it is on the
    Pareto front (no other configuration is at most as costly and at least as good on UEO-AUC, one of them strictly).
    """

    configuration: str
    position: int
    passes: float
    seconds: float
    devices: str
    benefits: dict[str, Interval]
    pareto: bool = False


def benefit_intervals(cases: pd.DataFrame, metrics: Sequence[str] = BENEFITS,
                      settings: StatisticsSettings = DEFAULT_STATISTICS) -> dict[str, dict[str, Interval]]:
    """Per configuration name, per metric: the repeated hold-out's number and its case-bootstrap CI.

    Args:
        cases: one row per (repeat, case, configuration) with ``repeat``, ``case``, ``configuration`` and the metric
            columns (:func:`pipeline.store.cohort_numbers.case_table`).
        metrics: the metric columns.
        settings: level, resamples, seed.
    """
    found: dict[str, dict[str, Interval]] = {}
    for name, rows in cases.groupby("configuration", sort=False):
        found[str(name)] = {metric: repeat_mean_interval(rows.pivot_table(
            index="repeat", columns="case", values=metric, aggfunc="first", dropna=False).to_numpy(np.float64),
            settings) for metric in metrics}
    return found


def _dominated(cost: float, value: float, others: Sequence[tuple[float, float]]) -> bool:
    return any(c <= cost and v >= value and (c < cost or v > value) for c, v in others)


def cost_axis(rows: Sequence[CostBenefit]) -> str:
    """``seconds`` when every row has measured seconds, else ``passes``."""
    return "seconds" if rows and all(not math.isnan(r.seconds) for r in rows) else "passes"


def with_front(rows: Sequence[CostBenefit]) -> list[CostBenefit]:
    """The rows with ``pareto`` set on (cost, UEO-AUC); rows without a UEO-AUC are never on the front."""
    axis = cost_axis(rows)
    points = [(getattr(r, axis), r.benefits[PRIMARY].estimate) for r in rows]
    known = [p for p in points if not math.isnan(p[1])]
    return [CostBenefit(r.configuration, r.position, r.passes, r.seconds, r.devices, r.benefits,
                        not math.isnan(p[1]) and not _dominated(*p, known)) for r, p in zip(rows, points, strict=True)]


def cheapest_within_best(rows: Sequence[CostBenefit]) -> tuple[CostBenefit, CostBenefit] | None:
    """(the best by UEO-AUC, the cheapest configuration whose UEO-AUC is within the best's CI); None without any
    UEO-AUC. Cheapest: least cost (:func:`cost_axis`), then fewer passes, then grid order."""
    known = [r for r in rows if not math.isnan(r.benefits[PRIMARY].estimate)]
    if not known:
        return None
    best = max(known, key=lambda r: (r.benefits[PRIMARY].estimate, -r.position))
    floor = best.benefits[PRIMARY].low
    within = [r for r in known if r.benefits[PRIMARY].estimate >= floor or r is best]
    axis = cost_axis(rows)
    cheapest = min(within, key=lambda r: (getattr(r, axis), r.passes, r.position))
    return best, cheapest


def verdict(rows: Sequence[CostBenefit], confidence: float = DEFAULT_STATISTICS.confidence) -> str:
    """The choice in words: the cheapest configuration whose UEO-AUC is within the CI of the best's."""
    found = cheapest_within_best(rows)
    if found is None:
        return "No configuration has a UEO-AUC on these cases (no reference, or no result)."
    best, cheapest = found
    metric = registry.metric(PRIMARY)
    interval = best.benefits[PRIMARY]
    level = f"{100 * confidence:g} %"

    def cost(row: CostBenefit) -> str:
        seconds = "" if math.isnan(row.seconds) else f", {row.seconds:.2f} s per case"
        return f"{row.passes:g} forward pass{'' if row.passes == 1 else 'es'}{seconds}"

    head = (f"Best {metric.label}: {best.configuration} {metric.format(interval.estimate)} "
            f"({level} CI {metric.format(interval.low)}–{metric.format(interval.high)}, n = {interval.n} cases; "
            f"{cost(best)}).")
    if cheapest is best:
        return f"{head} No cheaper configuration has a {metric.label} within that CI."
    share = (f", {100 * cheapest.seconds / best.seconds:.0f} % of the best's time"
             if best.seconds and not math.isnan(cheapest.seconds) and not math.isnan(best.seconds) else "")
    return (f"{head} The cheapest configuration whose {metric.label} is within that CI: {cheapest.configuration} "
            f"{metric.format(cheapest.benefits[PRIMARY].estimate)} ({cost(cheapest)}{share}).")


def table(rows: Sequence[CostBenefit], metrics: Sequence[str] = BENEFITS) -> pd.DataFrame:
    """The rows as a table (the CSV export, the PDF report): cost, each metric's estimate and CI, the front."""
    records = []
    for r in rows:
        record: dict[str, object] = {"configuration": r.configuration, "forward_passes": r.passes,
                                     "seconds_per_case": r.seconds, "device": r.devices}
        for metric in metrics:
            interval = r.benefits[metric]
            record |= {metric: interval.estimate, f"{metric}_low": interval.low, f"{metric}_high": interval.high}
        record |= {"n_cases": r.benefits[metrics[0]].n, "pareto": r.pareto}
        records.append(record)
    return pd.DataFrame.from_records(records)


def shown_table(rows: Sequence[CostBenefit], metrics: Sequence[str] = BENEFITS) -> pd.DataFrame:
    """The rows as people read them (the dashboard's table, the audit report): each metric as ``estimate [low,
    high]``, cost rounded, "—" where missing, ◆ on the front."""
    def cell(interval: Interval, metric: str) -> str:
        shown = registry.metric(metric).format
        if math.isnan(interval.estimate):
            return "—"
        return f"{shown(interval.estimate)} [{shown(interval.low)}, {shown(interval.high)}]"

    return pd.DataFrame.from_records([
        {"configuration": r.configuration, "passes": f"{r.passes:g}",
         "s per case": "—" if math.isnan(r.seconds) else f"{r.seconds:.2f}", "device": r.devices,
         **{registry.metric(m).label: cell(r.benefits[m], m) for m in metrics}, "Pareto": "◆" if r.pareto else ""}
        for r in rows])
