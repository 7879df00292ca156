"""The trends as the dashboard shows them: a quantity's value per nightly run of a configuration with the levels that
apply and each point's status, the stored levels, and the marks of the runs and cases out of their levels
(:mod:`pipeline.store.trends`, :mod:`pipeline.store.trend_check`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.metrics.levels import Levels, Status
from pipeline.store.strata import UNKNOWN_GROUP, case_groups
from pipeline.store.trend_check import case_statuses, check_runs, levels_for, stored_levels
from pipeline.store.trend_schema import EVERY, TrendLevel
from pipeline.store.trends import QUANTITIES, case_values, quantity, run_values

#: status → what the runs page, the overview and the worklist show
MARKS: dict[Status, str] = {"ok": "", "tolerance": "out of tolerance", "action": "beyond action"}
#: a mark → the Bootstrap text class of its cell
MARK_RULES = {"text-warning fw-semibold": "params.value === 'out of tolerance'",
              "text-danger fw-bold": "params.value === 'beyond action'"}


def choices(session: Session) -> tuple[list[str], dict[str, list[str]]]:
    """The configurations with a trend value (grid order) and, per per-structure quantity, its structures."""
    values = case_values(session, quantities=[q for q in QUANTITIES if q.per_structure][:1])
    configurations = list(dict.fromkeys(values.sort_values("position")["configuration"]))
    structures = sorted(set(values["structure"]) - {EVERY})
    return configurations, {q.name: structures for q in QUANTITIES if q.per_structure}


def trend(session: Session, configuration: str, name: str, structure: str = EVERY,
          acquisition: tuple[str, str] | None = None) -> tuple[list[dict[str, Any]], Levels | None]:
    """The value of quantity ``name`` per run of ``configuration`` (and ``structure``), oldest first: ``run``,
    ``started``, ``value``, ``n``, ``status``; and the levels that apply to it (None: none). With ``acquisition``
    (stratum key, group: :mod:`pipeline.store.strata`) over that group's cases only."""
    levels = levels_for(stored_levels(session), name, configuration, structure)
    cases = _cases(session, configuration, name, structure)
    if acquisition is not None:
        groups = case_groups(session, acquisition[0])
        cases = cases[cases["case"].map(groups) == acquisition[1]]
    return _points(cases, levels), levels


def group_trends(session: Session, configuration: str, name: str, key: str, structure: str = EVERY
                 ) -> dict[str, list[dict[str, Any]]]:
    """The points of :func:`trend` of each group of the stratum ``key`` (groups by name, ``unknown`` last)."""
    cases = _cases(session, configuration, name, structure)
    groups = cases["case"].map(case_groups(session, key))
    levels = levels_for(stored_levels(session), name, configuration, structure)
    return {str(group): _points(cases[groups == group], levels)
            for group in sorted(set(groups), key=lambda g: (g == UNKNOWN_GROUP, g))}


def _cases(session: Session, configuration: str, name: str, structure: str) -> pd.DataFrame:
    values = case_values(session, quantities=[quantity(name)])
    return values[(values["configuration"] == configuration) & (values["structure"] == structure)]


def _points(cases: pd.DataFrame, levels: Levels | None) -> list[dict[str, Any]]:
    points = []
    for row in run_values(cases).sort_values("run_id").itertuples():
        value = float(row.value)
        points.append({"run": int(row.run_id), "started": f"{row.started:%Y-%m-%d %H:%M:%S}", "value": value,
                       "n": int(row.n),
                       "status": "ok" if levels is None else levels.status(value)})
    return points


def level_rows(session: Session) -> list[dict[str, Any]]:
    """Every stored levels row, as the levels grid lists it."""
    rows = []
    for row in session.scalars(select(TrendLevel).order_by(TrendLevel.quantity, TrendLevel.configuration,
                                                           TrendLevel.structure)):
        rows.append({"quantity": row.quantity, "label": quantity(row.quantity).label,
                     "configuration": row.configuration or "every", "structure": row.structure or "—",
                     **asdict(row.levels()), "updated": f"{row.updated_at:%Y-%m-%d %H:%M}"})
    return rows


def run_marks(session: Session) -> dict[int, tuple[str, str]]:
    """Run id → (mark, the check's line) of each run with a value out of its levels."""
    return {run_id: (MARKS[check.status], check.line())
            for run_id, check in check_runs(session).items() if check.findings}


def case_marks(session: Session) -> dict[tuple[str, str], str]:
    """(case, configuration) → the mark of each case with a value out of its levels."""
    return {key: MARKS[status] for key, status in case_statuses(session).items()}


def worst_case_marks(session: Session) -> dict[str, str]:
    """Case → the mark of its worst configuration."""
    order = list(MARKS.values())
    found: dict[str, str] = {}
    for (case, _configuration), mark in case_marks(session).items():
        found[case] = max(found.get(case, ""), mark, key=order.index)
    return found
