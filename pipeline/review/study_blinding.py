"""Which arm of a review study applies when a user reads a case: the one rule every blinded view asks (pure).

A user's readings in **open** studies (:meth:`pipeline.review.study.StudyOperations.study_readings`) decide, per case:
- no reading of the case: ``None``, no study covers it and nothing is hidden;
- every reading of the case opened in arm B: :attr:`Arm.GUIDED` (B), uncertainty-guided review;
- otherwise :attr:`Arm.STANDARD` (A), standard review: a reading in arm A, or one not opened yet (its arm is
  concealed, and a concealed reading is read blind, so that nothing seen before the opening depends on the arm). A
  case in two open studies of the user is blind when either reading is.

What a reading hides (:func:`hidden`, ``docs/review-study.md`` lists where, and how the dashboard's server enforces
it): in arm A everything derived from uncertainty, and in **every** study reading (either arm, opened or not) the
case's reference contour and everything derived from it (error map, clinician's edits, DSC, reference volumes, edits
caught, any metric that needs the reference): for a study case the reference is the answer key (the final clinical
contour or an observer's). Apart from the reference, arm B hides nothing: arm A's view is a part of arm B's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pipeline.metrics.review_budget import Budget
from pipeline.review.study_allocation import Arm


@dataclass(frozen=True)
class StudyReading:
    """One reading of a user in an open study, as that user may know it: ``arm`` None until they opened the case."""

    study: str
    case: str
    configuration_id: int
    configuration: str
    model_set: str
    budget: Budget
    period: int
    order: int
    arm: Arm | None
    opened_at: datetime | None


def applicable_arm(readings: Iterable[StudyReading], case: str) -> Arm | None:
    """The arm that applies to ``case`` given the user's open-study ``readings`` (module description)."""
    covering = [reading for reading in readings if reading.case == case]
    if not covering:
        return None
    return Arm.GUIDED if all(reading.arm is Arm.GUIDED for reading in covering) else Arm.STANDARD


@dataclass(frozen=True)
class Hidden:
    """What a user reading a case does not see: ``uncertainty`` (everything derived from it: arm A, or a reading not
    opened yet) and ``reference`` (the reference contour and everything derived from it: any study reading)."""

    uncertainty: bool = False
    reference: bool = False


NOTHING_HIDDEN = Hidden()


def hidden(readings: Iterable[StudyReading], case: str) -> Hidden:
    """What ``case`` hides from a user with the open-study ``readings`` (module description): nothing outside a
    study; the reference in either arm, opened or not; and in arm A (or unopened) the uncertainty too."""
    arm = applicable_arm(readings, case)
    return Hidden(uncertainty=arm is Arm.STANDARD, reference=arm is not None)


def reading_order(readings: Iterable[StudyReading]) -> list[StudyReading]:
    """The readings in the order the allocation gives them (study, period, then the reviewer's order): the study
    worklist's order, the same for every arm, so that the list reveals no arm before an opening."""
    return sorted(readings, key=lambda r: (r.study, r.period, r.order, r.case))
