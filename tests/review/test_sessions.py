"""Server-side sessions on SQLite and PostgreSQL: a session resolves to its user until it is ended; idle and absolute
timeouts end it (audited once); a logout, a password change, a role change and a deactivation end every session of
the user; users list and end their own sessions, administrators everyone's; the store keeps only token hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from pipeline.review.base import ManualClock
from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.workflow import PermissionDenied
from pipeline.store.database import session_factory
from pipeline.store.review_schema import AuditEntry, UserSession
from tests.review.conftest import FAST_HASH

IDLE = 30.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def timed(engine: Engine, clock: ManualClock) -> ReviewService:
    return ReviewService(engine, password_method=FAST_HASH, clock=clock)


def _rows(engine: Engine, action: str) -> list[AuditEntry]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_a_session_lives_until_idle_or_expired_and_stores_only_a_hash(
        timed: ReviewService, users: dict[str, int], clock: ManualClock, engine: Engine) -> None:
    token = timed.start_session(users["reviewer"], max_hours=2, ip="10.0.0.1", user_agent="Mozilla\x00/5.0\n")
    session_id, actor = timed.resolve_session(token, IDLE)
    assert actor.username == "reviewer" and actor.role == "reviewer"
    with session_factory(engine)() as session:
        stored = session.get_one(UserSession, session_id)
        assert token not in (stored.token_hash, stored.user_agent) and stored.user_agent == "Mozilla?/5.0?"
    clock.now += timedelta(minutes=IDLE - 1)
    assert timed.resolve_session(token, IDLE) is not None  # used: the idle clock starts again
    clock.now += timedelta(minutes=IDLE - 1)
    assert timed.resolve_session(token, IDLE) is not None
    clock.now += timedelta(minutes=IDLE + 1)
    assert timed.resolve_session(token, IDLE) is None and timed.resolve_session(token, IDLE) is None
    assert [r.after for r in _rows(engine, "session.end")] == [{"reason": "idle"}]  # audited once

    other = timed.start_session(users["reviewer"], max_hours=1)
    for _ in range(5):  # in use every 20 minutes, but older than its maximum after an hour
        clock.now += timedelta(minutes=20)
        alive = timed.resolve_session(other, IDLE)
    assert alive is None and _rows(engine, "session.end")[-1].after == {"reason": "expired"}
    assert timed.resolve_session("forged-token", IDLE) is None


@pytest.mark.parametrize("change", [{"password": "a brand new passphrase"}, {"role": "approver"},
                                   {"active": False}])
def test_a_password_role_or_activation_change_ends_every_session(
        timed: ReviewService, users: dict[str, int], engine: Engine, change: dict[str, Any]) -> None:
    tokens = [timed.start_session(users["reviewer"], max_hours=8) for _ in range(2)]
    kept = timed.start_session(users["approver"], max_hours=8)
    timed.update_user(CommandLine("tester"), "reviewer", **change)
    assert [timed.resolve_session(t, IDLE) for t in tokens] == [None, None]
    assert timed.resolve_session(kept, IDLE) is not None
    assert _rows(engine, "user.update")[-1].after["sessions_ended"] == 2
    timed.update_user(CommandLine("tester"), "reviewer", active=True)  # reactivating ends nothing and revives none
    assert [timed.resolve_session(t, IDLE) for t in tokens] == [None, None]


def test_logout_ends_every_session_of_the_user(timed: ReviewService, users: dict[str, int], engine: Engine) -> None:
    first, second = (timed.start_session(users["viewer"], max_hours=8) for _ in range(2))
    assert timed.record_logout(users["viewer"], ip="10.0.0.2") == 2
    assert timed.resolve_session(first, IDLE) is None and timed.resolve_session(second, IDLE) is None
    assert _rows(engine, "logout")[-1].after == {"sessions_ended": 2}


def test_users_end_their_own_sessions_and_admins_anyones(timed: ReviewService, users: dict[str, int],
                                                         engine: Engine) -> None:
    mine = timed.start_session(users["reviewer"], max_hours=8, ip="10.0.0.3")
    theirs = timed.start_session(users["approver"], max_hours=8)
    listed = timed.list_sessions(users["reviewer"])
    assert [(s.username, s.ip) for s in listed] == [("reviewer", "10.0.0.3")]
    with pytest.raises(PermissionDenied, match="may not manage_users"):
        timed.list_sessions(users["reviewer"], everyone=True)
    their_id = timed.resolve_session(theirs, IDLE)[0]
    with pytest.raises(PermissionDenied, match="only their own sessions"):
        timed.end_session(users["reviewer"], their_id)
    assert (_rows(engine, "session.end")[-1].outcome, timed.resolve_session(theirs, IDLE) is not None) == (
        "denied", True)
    timed.end_session(users["reviewer"], listed[0].id)
    assert timed.resolve_session(mine, IDLE) is None
    assert {s.username for s in timed.list_sessions(users["admin"], everyone=True)} == {"approver"}
    timed.end_session(users["admin"], their_id)
    assert timed.resolve_session(theirs, IDLE) is None
    assert [r.after["reason"] for r in _rows(engine, "session.end") if r.outcome == "ok"] == [
        "ended by the user", "ended by an admin"]
    with pytest.raises(LookupError, match="has ended already"):
        timed.end_session(users["admin"], their_id)
