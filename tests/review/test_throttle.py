"""The login throttle on SQLite and PostgreSQL, through the service: parallel attempts are counted one after another
(50 at a time: exactly as many password checks as the pair allows), one client cannot lock a user out (the pair and
client limits delay only that client), a distributed attack delays the account for the rest of the window at most,
and an administrator unlocks (the command line and the service)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from pipeline.cli import main
from pipeline.review import accounts
from pipeline.review.base import ManualClock
from pipeline.review.service import AccountLockedError, AuthenticationError, CommandLine, ReviewService
from pipeline.review.throttle import ACCOUNT_FAILURES, CLIENT_FAILURES, PAIR_FREE, WINDOW
from pipeline.settings import Settings
from pipeline.store.database import session_factory
from pipeline.store.review_schema import AuditEntry
from tests.review.conftest import FAST_HASH, PASSWORD

WRONG = "not the password at all"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def throttled(engine: Engine, clock: ManualClock) -> ReviewService:
    service = ReviewService(engine, password_method=FAST_HASH, clock=clock)
    service.create_user(CommandLine("tester"), "ann", PASSWORD, "reviewer")
    return service


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the service checks (the hash check is the expensive step a throttle must bound)."""
    seen: list[str] = []
    real = accounts.check_password_hash

    def counted(stored: str, password: str) -> bool:
        seen.append(password)
        return real(stored, password)

    monkeypatch.setattr(accounts, "check_password_hash", counted)
    return seen


def _try(service: ReviewService, username: str, password: str, ip: str) -> str:
    try:
        service.authenticate(username, password, ip=ip)
    except AccountLockedError:
        return "locked"
    except AuthenticationError:
        return "failure"
    return "ok"


def _parallel(tries: int, width: int, attempt: Callable[[int], str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=width) as pool:
        return list(pool.map(attempt, range(tries)))


def _outcomes(engine: Engine, action: str = "login") -> list[str]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(AuditEntry.outcome).where(AuditEntry.action == action)
                                    .order_by(AuditEntry.id)))


def test_a_hundred_wrong_tries_fifty_at_a_time_check_the_password_five_times(
        throttled: ReviewService, checks: list[str], engine: Engine) -> None:
    outcomes = _parallel(100, 50, lambda _: _try(throttled, "ann", WRONG, "10.0.0.9"))
    assert len(checks) == PAIR_FREE and outcomes.count("failure") == PAIR_FREE
    assert outcomes.count("locked") == 100 - PAIR_FREE
    assert sorted(_outcomes(engine)) == sorted(outcomes)  # one audit row per attempt
    assert _try(throttled, "ann", PASSWORD, "10.0.0.9") == "locked"  # the guessing client waits
    assert _try(throttled, "ann", PASSWORD, "10.0.0.10") == "ok"  # the user elsewhere does not


def test_a_burst_of_forty_is_locked_after_five(throttled: ReviewService, checks: list[str]) -> None:
    outcomes = _parallel(40, 40, lambda n: _try(throttled, "ann", f"{WRONG} {n}", "10.0.0.8"))
    assert (outcomes.count("failure"), outcomes.count("locked"), len(checks)) == (PAIR_FREE, 40 - PAIR_FREE, PAIR_FREE)


def test_one_client_spraying_usernames_is_stopped_but_others_are_not(throttled: ReviewService, clock: ManualClock,
                                                                      checks: list[str]) -> None:
    sprayed = [_try(throttled, f"user{n}", WRONG, "10.6.6.6") for n in range(CLIENT_FAILURES + 5)]
    assert sprayed.count("failure") == CLIENT_FAILURES and sprayed[CLIENT_FAILURES:] == ["locked"] * 5
    assert len(checks) == CLIENT_FAILURES
    assert _try(throttled, "ann", PASSWORD, "10.6.6.6") == "locked"
    assert _try(throttled, "ann", PASSWORD, "10.7.7.7") == "ok"
    clock.now += WINDOW  # the client's window has passed: a delay, not a ban
    assert _try(throttled, "ann", PASSWORD, "10.6.6.6") == "ok"


def test_a_distributed_attack_delays_the_account_until_an_admin_unlocks_it(
        throttled: ReviewService, clock: ManualClock, engine: Engine, tmp_path: Any) -> None:
    for n in range(ACCOUNT_FAILURES):  # four tries per address: no pair or client limit is reached
        assert _try(throttled, "ann", WRONG, f"10.1.{n // 4}.{n % 4}") == "failure"
    assert _try(throttled, "ann", PASSWORD, "10.9.9.9") == "locked"
    with pytest.raises(AccountLockedError, match=r"try again in \d+ s") as locked:
        throttled.authenticate("ann", PASSWORD, ip="10.9.9.8")
    assert 0 < locked.value.retry_after <= WINDOW.total_seconds()
    assert _outcomes(engine)[-1] == "locked"
    settings = Settings(database_url=str(engine.url.render_as_string(hide_password=False)),
                        artifacts_dir=tmp_path / "artifacts", exports_dir=tmp_path / "exports")
    assert main(["users", "set", "--username", "ann", "--unlock"], settings) == 0
    assert _try(throttled, "ann", PASSWORD, "10.9.9.9") == "ok"
    with session_factory(engine)() as session:
        unlock = session.scalars(select(AuditEntry).where(AuditEntry.action == "user.update")).all()[-1]
    assert unlock.actor.startswith("cli:") and unlock.after["unlocked"] > 0


def test_an_admin_unlocks_an_address_and_the_window_forgets(throttled: ReviewService, clock: ManualClock) -> None:
    admin = throttled.create_user(CommandLine("tester"), "root-admin", PASSWORD, "admin").id
    for _ in range(PAIR_FREE):
        _try(throttled, "ann", WRONG, "10.3.3.3")
    assert _try(throttled, "ann", PASSWORD, "10.3.3.3") == "locked"
    assert [(scope, client) for scope, client, *_ in throttled.blocked_logins(admin)] == [("pair", "10.3.3.3")]
    assert throttled.unlock_logins(admin, client="10.3.3.3") == 2  # the pair and the client's counter
    assert _try(throttled, "ann", PASSWORD, "10.3.3.3") == "ok"
    assert throttled.blocked_logins(admin) == []
    for _ in range(PAIR_FREE):
        _try(throttled, "ann", WRONG, "10.3.3.3")
    clock.now += timedelta(days=2)  # a day later the pair starts afresh
    assert _try(throttled, "ann", WRONG, "10.3.3.3") == "failure"
    assert _try(throttled, "ann", PASSWORD, "10.3.3.3") == "ok"


def test_long_passwords_and_usernames_are_refused_without_hashing_them(throttled: ReviewService,
                                                                       checks: list[str]) -> None:
    assert _try(throttled, "ann", "x" * 5_000_000, "10.4.4.4") == "failure"
    assert _try(throttled, "a" * 10_000, PASSWORD, "10.4.4.4") == "failure"
    assert all(len(password) <= accounts.MAX_PASSWORD_LENGTH for password in checks)
