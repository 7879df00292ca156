"""The cost–benefit rows of a protocol filter (:mod:`pipeline.metrics.cost_benefit`): the comparison page's view, its
CSV export and the audit report read them from here.

Cost per case is the mean over the distinct results that count for the filter (a case tested in several repeats
counts once) of ``case_results.forward_passes`` and ``seconds_inference`` (NaN where none was measured: results
stored before migration 0016); the devices are every one those results name.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.metrics.cost_benefit import CostBenefit, benefit_intervals, with_front
from pipeline.metrics.statistics import DEFAULT_STATISTICS, StatisticsSettings
from pipeline.store.cohort_numbers import CohortFilter, case_table, chosen
from pipeline.store.schema import CaseResult, Configuration


def cost_benefit_rows(session: Session, f: CohortFilter, settings: StatisticsSettings = DEFAULT_STATISTICS
                      ) -> list[CostBenefit]:
    """One row per configuration with results for ``f``, in grid order, the Pareto front marked."""
    picked = chosen(session, f)
    results = select(picked.c.configuration_id, picked.c.result_id).distinct().subquery()
    costs = session.execute(
        select(Configuration.id, Configuration.name, Configuration.position,
               func.avg(CaseResult.forward_passes), func.avg(CaseResult.seconds_inference))
        .join(results, results.c.configuration_id == Configuration.id)
        .join(CaseResult, CaseResult.id == results.c.result_id)
        .group_by(Configuration.id, Configuration.name, Configuration.position)
        .order_by(Configuration.position)).all()
    devices: dict[int, set[str]] = {}
    for configuration_id, device in session.execute(
            select(results.c.configuration_id, CaseResult.device).join(CaseResult, CaseResult.id
                                                                        == results.c.result_id).distinct()):
        if device is not None:
            devices.setdefault(int(configuration_id), set()).add(str(device))
    cases = case_table(session, f)
    benefits = benefit_intervals(cases, settings=settings) if not cases.empty else {}
    rows = [CostBenefit(str(name), int(position), _number(passes), _number(seconds),
                        ", ".join(sorted(devices.get(int(i), ()))) or "unknown", benefits[str(name)])
            for i, name, position, passes, seconds in costs if str(name) in benefits]
    return with_front(rows)


def _number(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]
