"""Review time on SQLite and PostgreSQL: item clocks from start to decision, idle gaps capped, several items sharing
one person's time, region clocks, the permission rule, and the measured rate replacing the placeholder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from pipeline.errors import NotFoundError
from pipeline.metrics.review_budget import review_rate
from pipeline.review.base import ManualClock, utc
from pipeline.review.service import CommandLine, ItemKey, ReviewService
from pipeline.review.timing import opened_regions
from pipeline.review.workflow import PermissionDenied
from pipeline.settings import ReviewSettings
from pipeline.store.database import session_factory
from pipeline.store.review_schema import AuditEntry, ReviewTime
from tests.review.conftest import FAST_HASH, PASSWORD
from tests.review.test_service import _make_keys

START = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def timed(engine: Engine, clock: ManualClock) -> ReviewService:
    """A service on the test clock with a 60 s idle cap and a 3-item threshold for the measured rate."""
    return ReviewService(engine, password_method=FAST_HASH, clock=clock,
                         review=ReviewSettings(seconds_per_ml=30.0, measured_items=3, idle_cap_seconds=60.0))


@pytest.fixture
def accounts(timed: ReviewService) -> dict[str, int]:
    roles = {"rita": "reviewer", "rob": "reviewer", "vera": "viewer"}
    return {name: timed.create_user(CommandLine("t"), name, PASSWORD, role).id for name, role in roles.items()}


def _clocks(engine: Engine) -> list[ReviewTime]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(ReviewTime).order_by(ReviewTime.id)))


def test_an_item_clock_counts_active_time_from_start_to_decision_with_idle_gaps_capped(
    engine: Engine, timed: ReviewService, accounts: dict[str, int], clock: ManualClock
) -> None:
    key = _make_keys(engine, 1)[0]
    rita = accounts["rita"]
    timed.start_review(rita, key, flagged_ml=2.0)
    for gap in (15, 15, 15):  # working: every report counts in full
        clock.tick(gap)
        timed.report_activity(rita)
    clock.tick(600)  # away for ten minutes: the next report counts the cap only
    timed.report_activity(rita)
    clock.tick(10)
    timed.record_decision(rita, key, "accepted", None)  # the decision is activity too
    (item,) = _clocks(engine)
    assert item.seconds == pytest.approx(45 + 60 + 10)
    assert item.region_rank is None and item.flagged_ml == 2.0 and item.closed_at is not None
    clock.tick(30)
    timed.report_activity(rita)  # a closed clock takes no more time
    assert _clocks(engine)[0].seconds == pytest.approx(115)


def test_items_held_together_share_the_time_and_reports_only_credit_the_reporter(
    engine: Engine, timed: ReviewService, accounts: dict[str, int], clock: ManualClock
) -> None:
    keys = _make_keys(engine, 2)
    timed.bulk(accounts["rita"], "start_review", keys[:2], volumes={keys[0]: 1.0, keys[1]: 3.0})
    timed.start_review(accounts["rob"], keys[2])
    clock.tick(20)
    timed.report_activity(accounts["rita"])
    by_user = {(c.user_id, c.class_index, c.image_id): c.seconds for c in _clocks(engine)}
    assert sorted(by_user.values()) == [0.0, 10.0, 10.0], "rita's 20 s split over her two items; rob's untouched"
    assert [c.flagged_ml for c in _clocks(engine)] == [1.0, 3.0, None]


def test_region_clocks_record_which_region_when_and_how_long(
    engine: Engine, timed: ReviewService, accounts: dict[str, int], clock: ManualClock
) -> None:
    key = _make_keys(engine, 1)[0]
    region = timed.open_region(accounts["rita"], key.image_id, key.configuration_id, key.class_index, rank=2,
                               budget=0.02, flagged_ml=0.5)
    clock.tick(30)
    timed.report_activity(accounts["rita"], region)
    clock.tick(3600)
    timed.report_activity(accounts["rita"], region)
    (row,) = _clocks(engine)
    assert (row.region_rank, row.budget, row.flagged_ml, row.seconds) == (2, 0.02, 0.5, 90.0)
    assert utc(row.opened_at) == START and row.closed_at is None
    timed.open_region(accounts["rob"], key.image_id, key.configuration_id, key.class_index, rank=2, budget=0.02,
                      flagged_ml=0.5)
    with session_factory(engine)() as session:  # the worklist's tick: opened, by whom first
        ticks = opened_regions(session, [key.configuration_id])
        assert ticks == {(key.image_id, key.configuration_id, key.class_index, 2, 0.02): "rita"}
        assert opened_regions(session, [key.configuration_id + 1000]) == {}


def test_nobody_writes_time_on_another_users_item_or_clock(
    engine: Engine, timed: ReviewService, accounts: dict[str, int], clock: ManualClock
) -> None:
    key = _make_keys(engine, 1)[0]
    timed.start_review(accounts["rita"], key)
    with pytest.raises(PermissionDenied, match="another user reviews"):
        timed.open_region(accounts["rob"], key.image_id, key.configuration_id, key.class_index, rank=1,
                          budget=0.02, flagged_ml=1.0)
    other = ItemKey(key.image_id, key.configuration_id, 2)
    robs = timed.open_region(accounts["rob"], other.image_id, other.configuration_id, other.class_index, rank=1,
                             budget=0.02, flagged_ml=1.0)
    clock.tick(20)
    with pytest.raises(PermissionDenied, match="another user's region clock"):
        timed.report_activity(accounts["rita"], robs)
    with pytest.raises(PermissionDenied, match="viewer"):
        timed.report_activity(accounts["vera"])
    with pytest.raises(PermissionDenied, match="signed-in user"):
        timed.report_activity(CommandLine("t"))
    with pytest.raises(NotFoundError, match="no region clock"):
        timed.report_activity(accounts["rita"], 10_000)
    assert all(c.seconds == 0.0 for c in _clocks(engine)), "a refused report writes nothing"
    with session_factory(engine)() as session:
        denied = session.scalars(select(AuditEntry).where(AuditEntry.outcome == "denied")).all()
    assert [d.action for d in denied] == ["review.time"] * 5


def test_the_measured_median_replaces_the_placeholder_at_the_threshold(
    engine: Engine, timed: ReviewService, accounts: dict[str, int], clock: ManualClock
) -> None:
    keys = _make_keys(engine, 2)
    rita = accounts["rita"]
    placeholder = timed.review_rate()
    assert (placeholder.seconds_per_ml, placeholder.measured, placeholder.n_measured) == (30.0, False, 0)
    assert placeholder.label() == "placeholder: 30 s/mL until 3 measured items; n measured = 0"
    for number, (key, seconds, ml) in enumerate(zip(keys, (40, 50, 60), (2.0, 1.0, 1.0), strict=False), start=1):
        timed.start_review(rita, key, flagged_ml=ml)
        clock.tick(seconds)
        timed.record_decision(rita, key, "accepted", None)
        rate = timed.review_rate()
        assert rate.n_measured == number
        if number < 3:
            assert not rate.measured and rate.seconds_per_ml == 30.0
            assert rate.label().endswith(f"n measured = {number}")
    assert rate.measured and rate.seconds_per_ml == 50.0, "median of 20, 50 and 60 s/mL"
    assert rate.label() == "measured: 50 s/mL (median of 3 reviewed items)"
    assert rate.minutes(6.0) == pytest.approx(5.0)
    timed.start_review(rita, keys[3])  # no flagged volume: never a measured item
    clock.tick(30)
    timed.record_decision(rita, keys[3], "accepted", None)
    assert timed.review_rate().n_measured == 3


def test_the_rate_rule_on_its_own() -> None:
    assert review_rate([], 30.0, 20).label() == "placeholder: 30 s/mL until 20 measured items; n measured = 0"
    below = review_rate([10.0] * 19, 30.0, 20)
    assert (below.seconds_per_ml, below.measured, below.n_measured) == (30.0, False, 19)
    at = review_rate([10.0] * 10 + [20.0] * 10, 30.0, 20)
    assert (at.seconds_per_ml, at.measured, at.n_measured) == (15.0, True, 20)
    assert review_rate([float("nan"), 0.0, -1.0, 5.0], 30.0, 1).n_measured == 1
