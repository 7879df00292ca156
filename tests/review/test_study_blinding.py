"""The blinding rule (pure): which arm applies to a user reading a case, from its readings in open studies, and what
the reading hides."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.metrics.review_budget import Budget
from pipeline.review.study_allocation import Arm
from pipeline.review.study_blinding import NOTHING_HIDDEN, Hidden, StudyReading, applicable_arm, hidden, reading_order

OPENED = datetime(2026, 12, 1, tzinfo=UTC)


def _reading(case: str, arm: Arm | None, study: str = "s", period: int = 1, order: int = 1) -> StudyReading:
    return StudyReading(study, case, 1, "DE", "ms", Budget("fraction", 0.02), period, order, arm,
                        None if arm is None else OPENED)


def test_no_reading_of_the_case_means_no_study_applies() -> None:
    assert applicable_arm([], "x") is None
    assert applicable_arm([_reading("y", Arm.STANDARD)], "x") is None


def test_an_opened_arm_is_the_arm_and_a_concealed_reading_is_read_blind() -> None:
    assert applicable_arm([_reading("x", Arm.STANDARD)], "x") is Arm.STANDARD
    assert applicable_arm([_reading("x", Arm.GUIDED)], "x") is Arm.GUIDED
    assert applicable_arm([_reading("x", None)], "x") is Arm.STANDARD  # not opened: nothing depends on the arm


def test_a_case_in_two_studies_is_blind_when_either_reading_is() -> None:
    assert applicable_arm([_reading("x", Arm.GUIDED, "s1"), _reading("x", Arm.STANDARD, "s2")], "x") is Arm.STANDARD
    assert applicable_arm([_reading("x", Arm.GUIDED, "s1"), _reading("x", None, "s2")], "x") is Arm.STANDARD
    assert applicable_arm([_reading("x", Arm.GUIDED, "s1"), _reading("x", Arm.GUIDED, "s2")], "x") is Arm.GUIDED


def test_the_reading_order_is_the_allocations_whatever_the_arms() -> None:
    readings = [_reading("c", Arm.GUIDED, period=2, order=1), _reading("a", None, order=2),
                _reading("b", Arm.STANDARD, order=1)]
    assert [r.case for r in reading_order(readings)] == ["b", "a", "c"]


def test_every_study_reading_hides_the_reference_and_arm_a_the_uncertainty_too() -> None:
    assert hidden([], "x") == hidden([_reading("y", Arm.STANDARD)], "x") == NOTHING_HIDDEN
    assert hidden([_reading("x", Arm.GUIDED)], "x") == Hidden(uncertainty=False, reference=True)
    for arm in (Arm.STANDARD, None):  # arm A, or concealed: blind to both
        assert hidden([_reading("x", arm)], "x") == Hidden(uncertainty=True, reference=True)
