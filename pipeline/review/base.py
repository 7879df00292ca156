"""What every review operation shares: actors, the one audit row, refusals audited as ``denied``, and write
transactions that take SQLite's write lock first.

Every operation runs in one transaction and writes exactly one ``audit_log`` row: ``outcome`` ``ok`` with the
object's state before and after, or, when it is refused (permission matrix, workflow, self-approval, stale version,
bad input), ``denied`` with the reason, written in a transaction of its own after the refused one rolled back.

Actors are user ids, re-read on every call (a role change or deactivation applies at once), or
:class:`CommandLine`: whoever holds the store's credentials, with admin rights, audited as ``cli:<os user>``.
The audit row's time, its hashes and (for a user) its actor's name are the store's, not the caller's
(:mod:`pipeline.store.audit_chain`).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from pipeline.errors import RefusedError, UserError
from pipeline.review.workflow import Actor, PermissionDenied, Role, WorkflowError
from pipeline.store.review_schema import AuditEntry, User
from pipeline.store.schema import utcnow

log = logging.getLogger(__name__)

PASSWORD_METHOD = "scrypt"


class ConcurrentEditError(WorkflowError):
    """The item changed since the caller read it (optimistic locking); reload and try again."""


class AuthenticationError(RefusedError):
    """A login that failed; the message never says whether the username exists."""


class AccountLockedError(AuthenticationError):
    """Too many failed logins from this client (or for this account): refused, without a password check, until
    ``retry_after`` seconds have passed."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class CommandLine:
    """The command line as an actor: the operating-system user who holds the store's credentials."""

    os_user: str = field(default_factory=getpass.getuser)


Principal = int | CommandLine


class Refused(Exception):
    """Internal: a refusal already rolled back, to be audited as ``denied`` and re-raised."""

    def __init__(self, error: Exception, object_type: str, object_id: str | None) -> None:
        super().__init__(str(error))
        self.error, self.object_type, self.object_id = error, object_type, object_id


def utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass
class ManualClock:
    """A services' clock (``clock=``) that moves only when told: a simulation's (the demo's review study) and the
    tests'."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        """Move on by ``seconds``."""
        self.now += timedelta(seconds=seconds)


def aware(moment: datetime | None) -> datetime | None:
    return utc(moment) if moment is not None else None


class ServiceBase:
    """The store, the clock (throttles and sessions; injectable for tests) and the audited transaction."""

    def __init__(self, engine: Engine, *, password_method: str = PASSWORD_METHOD,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._sqlite = engine.dialect.name == "sqlite"
        self._password_method = password_method
        self._clock = clock

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction; on SQLite it starts with ``BEGIN IMMEDIATE`` (the write lock, waited for up to the
        busy timeout), so concurrent read-then-write operations queue instead of failing with 'database is
        locked' (PostgreSQL locks rows instead: ``SELECT … FOR UPDATE``)."""
        with self._sessions.begin() as session:
            if self._sqlite:
                session.connection().execute(text("BEGIN IMMEDIATE"))
            yield session

    def _actor(self, session: Session, principal: Principal) -> Actor:
        if isinstance(principal, CommandLine):
            return Actor(None, f"cli:{principal.os_user}", Role.ADMIN)
        user = session.get(User, principal)
        if user is None or not user.active:
            raise PermissionDenied(f"user #{principal} is unknown or deactivated")
        return Actor(user.id, user.username, Role(user.role))

    def _audit(self, session: Session, actor: Actor, action: str, outcome: str, object_type: str,
               object_id: str | None, before: dict[str, Any] | None, after: dict[str, Any] | None,
               ip: str | None) -> None:
        session.add(AuditEntry(at=self._clock(), actor_id=actor.user_id, actor=actor.username, action=action,
                               outcome=outcome, object_type=object_type, object_id=object_id, before=before,
                               after=after, ip=ip))

    def _deny(self, principal: Principal, action: str, refused: Refused, ip: str | None) -> None:
        """Write the one ``denied`` row of a refused operation, in its own transaction."""
        with self._write() as session:
            try:
                actor = self._actor(session, principal)
            except PermissionDenied:
                actor = Actor(None, f"user#{principal}", Role.VIEWER)
            reason = f"{type(refused.error).__name__}: {refused.error}"
            self._audit(session, actor, action, "denied", refused.object_type, refused.object_id, None,
                        {"reason": reason}, ip)
        log.info("denied %s by %s: %s", action, principal, str(refused.error)[:500])

    def _run(self, principal: Principal, action: str, object_type: str, object_id: str | None, ip: str | None,
             body: Callable[[Session, Actor], Any]) -> Any:
        """Run ``body`` in one transaction; a refusal is audited as ``denied`` and re-raised."""
        try:
            try:
                with self._write() as session:
                    return body(session, self._actor(session, principal))
            except StaleDataError as error:
                raise Refused(ConcurrentEditError("the item changed meanwhile: reload it"), object_type,
                              object_id) from error
            except IntegrityError as error:
                raise Refused(ConcurrentEditError(f"conflicting write: {str(error).splitlines()[0]}"), object_type,
                              object_id) from error
            except UserError as error:
                raise Refused(error, object_type, object_id) from error
        except Refused as refused:
            self._deny(principal, action, refused, ip)
            refused.error.audited = True  # type: ignore[attr-defined]  (callers need not audit it again)
            raise refused.error from None
