"""The stored tolerance and action levels applied to the trend values (:mod:`pipeline.store.trends`): which run and
which case is out, the one line ``pipeline run`` prints and its exit code.

The levels that apply to a value of (quantity, configuration, structure) are the most specific stored row: the
configuration's own before every configuration's (``''``), and the structure's own before every structure's.
A run's values (per configuration, quantity and structure) are judged for every quantity; each case's values only
for ``case``-level quantities. Without stored levels nothing is judged and the exit code is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import EXIT_OK, EXIT_OUT_OF_ACTION, EXIT_OUT_OF_TOLERANCE
from pipeline.metrics.levels import Breach, Levels, Status, worst
from pipeline.store.trend_schema import EVERY, TrendLevel
from pipeline.store.trends import case_values, quantity, run_values

LevelKey = tuple[str, str, str]  # quantity, configuration ('' = every), structure ('' = the case / every)


def stored_levels(session: Session) -> dict[LevelKey, Levels]:
    """Every stored row's levels by (quantity, configuration, structure)."""
    return {(row.quantity, row.configuration, row.structure): row.levels()
            for row in session.scalars(select(TrendLevel))}


def levels_for(levels: Mapping[LevelKey, Levels], name: str, configuration: str, structure: str) -> Levels | None:
    """The most specific levels of a value (module description), or None when none applies."""
    for key in ((name, configuration, structure), (name, EVERY, structure), (name, configuration, EVERY),
                (name, EVERY, EVERY)):
        if key in levels:
            return levels[key]
    return None


@dataclass(frozen=True)
class Finding:
    """A value out of its levels: the run's (``case`` None) or a case's."""

    run_id: int
    case: str | None
    configuration: str
    quantity: str
    structure: str
    value: float
    breach: Breach

    def text(self) -> str:
        """``DE Mean entropy (ROI) 0.410 > 0.300`` (with the case and structure when there are)."""
        item = quantity(self.quantity)
        where = " ".join(p for p in (self.case, self.configuration, self.structure, item.label) if p)
        return f"{where} {item.describe(self.value)} {self.breach.side} {self.breach.bound:g}"


@dataclass
class RunCheck:
    """How one run's values stand against the levels: how many were judged and which are out."""

    run_id: int
    run_checked: int = 0
    case_checked: int = 0
    findings: list[Finding] = field(default_factory=list)

    def of(self, cases: bool) -> list[Finding]:
        """The findings of the run's values (``cases`` False) or of its cases' values."""
        return [f for f in self.findings if (f.case is not None) == cases]

    @property
    def status(self) -> Status:
        """The worst status of any judged value."""
        return worst(f.breach.status for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 within tolerance (or nothing judged), 4 out of tolerance, 5 beyond an action level."""
        return {"ok": EXIT_OK, "tolerance": EXIT_OUT_OF_TOLERANCE, "action": EXIT_OUT_OF_ACTION}[self.status]

    def line(self) -> str:
        """One line for cron mail, e.g. ``run 12: 2 of 14 values out of tolerance, 1 beyond action: DE mean ROI
        entropy 0.410 > 0.3; 1 of 30 case values out of tolerance, 0 beyond action: case_7 DE flagged mL …``;
        the most severe finding of each kind is named."""
        if not self.run_checked and not self.case_checked:
            return f"run {self.run_id}: no tolerance or action level applies to its values"
        parts = []
        for checked, found, what in ((self.run_checked, self.of(False), "values"),
                                     (self.case_checked, self.of(True), "case values")):
            if not checked:
                continue
            beyond = sum(f.breach.status == "action" for f in found)
            text = f"{len(found)} of {checked} {what} out of tolerance, {beyond} beyond action"
            if found:
                first = max(found, key=lambda f: f.breach.status == "action")
                text += f": {first.text()}"
            parts.append(text)
        return f"run {self.run_id}: " + "; ".join(parts)


def _judge(frame: pd.DataFrame, levels: Mapping[LevelKey, Levels], cases: bool,
           checks: dict[int, RunCheck]) -> None:
    for row in frame.itertuples(index=False):
        if cases and quantity(row.quantity).level != "case":
            continue
        chosen = levels_for(levels, row.quantity, row.configuration, row.structure)
        if chosen is None or pd.isna(row.value):
            continue
        check = checks.setdefault(int(row.run_id), RunCheck(int(row.run_id)))
        if cases:
            check.case_checked += 1
        else:
            check.run_checked += 1
        breach = chosen.breach(float(row.value))
        if breach is not None:
            check.findings.append(Finding(int(row.run_id), row.case if cases else None, row.configuration,
                                          row.quantity, row.structure, float(row.value), breach))


def check_runs(session: Session, run_ids: Sequence[int] | None = None) -> dict[int, RunCheck]:
    """Each run's check (of ``run_ids``, default every run with a judged value; a listed run with none has an empty
    check)."""
    checks = {run_id: RunCheck(run_id) for run_id in run_ids or ()}
    levels = stored_levels(session)
    if not levels:
        return checks
    cases = case_values(session, run_ids)
    _judge(run_values(cases), levels, False, checks)
    _judge(cases, levels, True, checks)
    return checks


def check_run(session: Session, run_id: int) -> RunCheck | None:
    """The check of one run, or None when no level is stored (nothing to judge: the run exits as it would)."""
    if session.scalar(select(TrendLevel.quantity).limit(1)) is None:
        return None
    return check_runs(session, [run_id])[run_id]


def case_statuses(session: Session) -> dict[tuple[str, str], Status]:
    """(case, configuration) → the worst status of the case's ``case``-level values (only cases with one judged)."""
    found: dict[tuple[str, str], Status] = {}
    for check in check_runs(session).values():
        for finding in check.of(True):
            key = (str(finding.case), finding.configuration)
            found[key] = worst((found.get(key, "ok"), finding.breach.status))
    return found
