"""Login throttling that concurrency cannot get around and that cannot lock a user out for good.

Three counters of failed logins (``login_throttle`` rows), checked and charged together in one write transaction
before the password is checked (:func:`reserve`), so that N parallel attempts are counted one after another:

- ``pair`` (one client address and one typed username): :data:`PAIR_FREE` failures are free; the failure that
  reaches it and every later one block the pair for :data:`BACKOFF_START` doubling each time, at most
  :data:`BACKOFF_MAX` (exponential back-off). Someone guessing a password from one address waits; the real user at
  another address is not affected. A success or 24 h without a failure starts the pair afresh.
- ``client`` (one address, any username): at most :data:`CLIENT_FAILURES` per :data:`WINDOW` (password spraying).
- ``account`` (one username, any address): at most :data:`ACCOUNT_FAILURES` per :data:`WINDOW`, well above what
  one address may try, so only a distributed attack reaches it, and then it delays the account for the rest of the
  window (never longer).

While any of the three is blocked the attempt is refused without a password check. The attempt is charged as a
failure up front; :func:`settle` takes the charge back when the password was right. On PostgreSQL the rows are
locked (``SELECT … FOR UPDATE``); on SQLite the caller's transaction holds the write lock (``BEGIN IMMEDIATE``).
An administrator clears a user's or an address's counters with :func:`unlock` (``python -m pipeline users set
--unlock``, or the sessions page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pipeline.review.base import aware
from pipeline.store.review_schema import LoginThrottle

PAIR_FREE = 5
BACKOFF_START = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=15)
PAIR_MEMORY = timedelta(hours=24)
CLIENT_FAILURES = 30
ACCOUNT_FAILURES = 50
WINDOW = timedelta(minutes=15)
UNKNOWN_CLIENT = "unknown"
SCOPES = ("account", "client", "pair")  # the order rows are locked in (no deadlocks between two logins)


@dataclass(frozen=True)
class Verdict:
    """What :func:`reserve` decided: refused (``blocked_until`` set, with the scope that refused) or charged (the
    pair's failures so far, this attempt included, and until when this attempt's charge blocks the pair)."""

    scope: str | None
    blocked_until: datetime | None
    pair_failures: int
    pair_blocked_until: datetime | None = None


def keys(client: str | None, account: str) -> dict[str, tuple[str, str]]:
    """Scope → (client, account) of the three rows of one attempt."""
    address = (client or UNKNOWN_CLIENT)[:45]
    name = account[:64]
    return {"account": ("", name), "client": (address, ""), "pair": (address, name)}


def _rows(session: Session, wanted: dict[str, tuple[str, str]], now: datetime) -> dict[str, LoginThrottle]:
    """The attempt's three rows, created when missing, locked until the end of the transaction."""
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(LoginThrottle)
    session.execute(insert.values([{"scope": scope, "client": client, "account": account, "failures": 0,
                                    "window_started_at": now} for scope, (client, account) in wanted.items()])
                    .on_conflict_do_nothing(index_elements=["scope", "client", "account"]))
    found = {}
    for scope in SCOPES:
        client, account = wanted[scope]
        found[scope] = session.scalars(select(LoginThrottle).where(
            LoginThrottle.scope == scope, LoginThrottle.client == client, LoginThrottle.account == account)
            .with_for_update().execution_options(populate_existing=True)).one()
    return found


def _window(row: LoginThrottle, now: datetime) -> None:
    length = PAIR_MEMORY if row.scope == "pair" else WINDOW
    if now >= aware(row.window_started_at) + length:
        row.failures, row.window_started_at, row.blocked_until = 0, now, None


def reserve(session: Session, client: str | None, account: str, now: datetime) -> Verdict:
    """Refuse the attempt when a counter blocks it; else charge it as a failure to all three (see the module)."""
    rows = _rows(session, keys(client, account), now)
    for row in rows.values():
        _window(row, now)
    blocking = [(aware(r.blocked_until), r.scope) for r in rows.values()
                if r.blocked_until is not None and aware(r.blocked_until) > now]
    if blocking:
        until, scope = max(blocking)
        return Verdict(scope, until, rows["pair"].failures)
    for row in rows.values():
        row.failures += 1
    pair, limits = rows["pair"], {"client": CLIENT_FAILURES, "account": ACCOUNT_FAILURES}
    if pair.failures >= PAIR_FREE:
        pair.blocked_until = now + min(BACKOFF_START * 2 ** (pair.failures - PAIR_FREE), BACKOFF_MAX)
    for scope, limit in limits.items():
        if rows[scope].failures >= limit:
            rows[scope].blocked_until = aware(rows[scope].window_started_at) + WINDOW
    return Verdict(None, None, pair.failures, aware(pair.blocked_until))


def settle(session: Session, client: str | None, account: str) -> None:
    """A right password: the pair starts afresh and the attempt's charge to the client and account is taken back."""
    wanted = keys(client, account)
    for scope, (address, name) in wanted.items():
        where = (LoginThrottle.scope == scope, LoginThrottle.client == address, LoginThrottle.account == name)
        if scope == "pair":
            session.execute(update(LoginThrottle).where(*where).values(failures=0, blocked_until=None))
            continue
        limit = CLIENT_FAILURES if scope == "client" else ACCOUNT_FAILURES
        row = session.scalars(select(LoginThrottle).where(*where).with_for_update()
                              .execution_options(populate_existing=True)).one_or_none()
        if row is not None:
            row.failures = max(row.failures - 1, 0)
            if row.failures < limit:
                row.blocked_until = None


def unlock(session: Session, account: str | None = None, client: str | None = None) -> int:
    """Clear the counters of a username (its account and every pair with it) and/or of an address; how many rows
    were blocked or counting."""
    conditions = []
    if account:
        conditions.append(LoginThrottle.account == account[:64])
    if client:
        conditions.append(LoginThrottle.client == client[:45])
    if not conditions:
        return 0
    done = session.execute(update(LoginThrottle).where(or_(*conditions), LoginThrottle.failures > 0)
                           .values(failures=0, blocked_until=None))
    return int(done.rowcount or 0)


def blocked(session: Session, now: datetime) -> list[LoginThrottle]:
    """The rows that refuse logins now (for the administrator's page)."""
    return list(session.scalars(select(LoginThrottle).where(LoginThrottle.blocked_until > now)
                                .order_by(LoginThrottle.blocked_until.desc())))
