"""The one rule of which stored result is a case's *deployed* result: the result outside any protocol, the one the
worklist, the slice browser, the exports and the real-CT tables show.

- An uncalibrated configuration's deployed result has no temperature fit.
- A TS configuration's deployed result carries a fit whose role is ``deployed`` (fitted on the whole calibration
  cohort; applied to every case outside it) or ``crossfit`` (fitted on the cohort minus the case's fold; applied to
  that fold), so that no deployed TS result comes from a temperature fitted on its own case.

:func:`deployed_result` is the rule as a WHERE clause (for queries that outer-join ``TemperatureFit`` on
``CaseResult.temperature_fit_id``); :func:`fit_for` picks the fit the batch applies to a case.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, or_

from pipeline.store.schema import CaseResult, TemperatureFit

DEPLOYED_ROLES = ("deployed", "crossfit")


def deployed_result() -> ColumnElement[bool]:
    """The rule of the module's description as a WHERE clause over ``CaseResult`` and its outer-joined
    ``TemperatureFit``."""
    return or_(CaseResult.temperature_fit_id.is_(None), TemperatureFit.role.in_(DEPLOYED_ROLES))


def fit_for(case: str, fits: Sequence[TemperatureFit]) -> TemperatureFit | None:
    """The fit a TS configuration applies to ``case`` among its deployed fits: one whose calibration cases do not
    include the case — the cross-fit of its fold for a cohort case, the whole-cohort fit for any other — or None."""
    outside = [fit for fit in fits if case not in (fit.cases or ())]
    ranked = sorted(outside, key=lambda fit: (fit.role != "deployed", -fit.id))
    return ranked[0] if ranked else None
