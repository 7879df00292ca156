"""Which cases and reviewers a study definition names, checked against the store (:mod:`pipeline.review.study`).

A study's cases are chosen one way: a cohort (every case of it), a processing date range (every case whose deployed
result of the configuration under test was computed on one of those days, UTC, both ends included) or a list of case
names. Every case must have a deployed result of that configuration (arm B shows its uncertainty); a listed case
without one, or an unknown one, is the user's mistake. Reviewers are active users with the **reviewer** role:
approvers and admins may see every allocation, so they could not be blinded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError
from pipeline.review.workflow import Role
from pipeline.store.deployed import deployed_result
from pipeline.store.review_schema import User
from pipeline.store.schema import CaseResult, Image, Processing, TemperatureFit


@dataclass(frozen=True)
class CaseSelection:
    """How a study's cases are chosen: exactly one of ``cohort``, the range ``processed_from`` .. ``processed_to``
    (both given) or ``names``."""

    cohort: str | None = None
    processed_from: date | None = None
    processed_to: date | None = None
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ranged = self.processed_from is not None or self.processed_to is not None
        if sum((self.cohort is not None, ranged, bool(self.names))) != 1:
            raise InputError("choose a study's cases one way: a cohort, a processing date range or a list of cases")
        if ranged and (self.processed_from is None or self.processed_to is None):
            raise InputError("a processing date range needs both its first and its last day")
        if ranged and self.processed_from > self.processed_to:  # type: ignore[operator]
            raise InputError(f"the range starts ({self.processed_from}) after it ends ({self.processed_to})")

    def record(self) -> dict[str, Any]:
        """The selection as the study stores it (``case_source``)."""
        if self.cohort is not None:
            return {"cohort": self.cohort}
        if self.names:
            return {"cases": list(self.names)}
        return {"processed_from": str(self.processed_from), "processed_to": str(self.processed_to)}


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def select_cases(session: Session, configuration_id: int, selection: CaseSelection) -> dict[str, int]:
    """Case name → image id of the cases ``selection`` names that have a deployed result of the configuration."""
    query = (select(Image.name, Image.id)
             .join(CaseResult, CaseResult.image_id == Image.id)
             .join(Processing, Processing.id == CaseResult.processing_id)
             .outerjoin(TemperatureFit, TemperatureFit.id == CaseResult.temperature_fit_id)
             .where(CaseResult.configuration_id == configuration_id, deployed_result()))
    if selection.cohort is not None:
        query = query.where(Image.cohort == selection.cohort)
    elif selection.names:
        query = query.where(Image.name.in_(selection.names))
    else:
        assert selection.processed_from is not None and selection.processed_to is not None
        query = query.where(Processing.completed_at >= _day_start(selection.processed_from),
                            Processing.completed_at < _day_start(selection.processed_to + timedelta(days=1)))
    found: dict[str, int] = {name: image_id for name, image_id in session.execute(query)}
    if selection.names:
        _check_listed(session, selection.names, found)
    if not found:
        raise InputError(f"no case with a result of the configuration matches {selection.record()}: a study needs "
                         "at least one case")
    return found


def _check_listed(session: Session, names: Sequence[str], found: dict[str, int]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"case {repeated[0]!r} is listed twice")
    missing = [name for name in names if name not in found]
    if not missing:
        return
    known = set(session.scalars(select(Image.name).where(Image.name.in_(missing))))
    unknown = [name for name in missing if name not in known]
    if unknown:
        raise NotFoundError(f"unknown case {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if unknown[1:] else ""))
    raise InputError(f"case {missing[0]!r} has no result of the configuration under test: run the batch on it first")


def select_reviewers(session: Session, usernames: Sequence[str]) -> dict[str, int]:
    """Username → user id of the study's reviewers: each an active user with the reviewer role, none twice."""
    if not usernames:
        raise InputError("a study needs at least one reviewer")
    repeated = sorted({name for name in usernames if usernames.count(name) > 1})
    if repeated:
        raise InputError(f"reviewer {repeated[0]!r} is listed twice")
    users = {u.username: u for u in session.scalars(select(User).where(User.username.in_(usernames)))}
    chosen: dict[str, int] = {}
    for name in usernames:
        user = users.get(name)
        if user is None:
            raise NotFoundError(f"unknown user {name[:64]!r}")
        if not user.active:
            raise InputError(f"user {name!r} is deactivated")
        if user.role != Role.REVIEWER:
            raise InputError(f"user {name!r} is {user.role}, not reviewer: a study's reviewers need the reviewer role "
                             "(approvers and admins see the allocation, so they cannot be blinded)")
        chosen[name] = user.id
    return chosen
