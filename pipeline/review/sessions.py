"""Server-side dashboard sessions: a random token in the browser's (signed) cookie, its SHA-256 in ``user_sessions``.

A session is valid while it is not revoked, younger than ``max_hours`` (``expires_at``) and used within
``idle_minutes``; the user must still be active. It is revoked when the user logs out (every session of the user),
when an administrator changes the user's password or role or deactivates the account (every session), when the user
or an administrator ends it on the sessions page, and when it is found idle or expired (audited ``session.end``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pipeline.errors import NotFoundError
from pipeline.review import workflow
from pipeline.review.base import Principal, ServiceBase, aware, utc
from pipeline.review.workflow import Action, Actor, PermissionDenied, Role
from pipeline.store.review_schema import User, UserSession

TOUCH_EVERY = timedelta(seconds=60)  # how stale last_seen_at may get (the idle timeout's resolution)
USER_AGENT_CHARS = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SessionInfo:
    """A session as the sessions page lists it (never its token)."""

    id: int
    username: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    revoked_at: datetime | None
    revoked_reason: str | None


def revoke_all(session: Session, user_id: int, reason: str, now: datetime) -> int:
    """End every open session of ``user_id`` (in the caller's transaction); how many were open."""
    done = session.execute(update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
                           .values(revoked_at=now, revoked_reason=reason))
    return int(done.rowcount or 0)


def clean_user_agent(value: str | None) -> str | None:
    """A User-Agent header fit to store and show: printable ASCII only, at most 200 characters."""
    if not value:
        return None
    kept = "".join(c if " " <= c <= "~" else "?" for c in value[:USER_AGENT_CHARS])
    return kept or None


class SessionOperations(ServiceBase):
    """Starting, checking, listing and ending dashboard sessions."""

    def start_session(self, user_id: int, max_hours: float, ip: str | None = None,
                      user_agent: str | None = None) -> str:
        """A new session of ``user_id`` (after a successful login); its token, for the cookie only."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._write() as session:
            session.add(UserSession(token_hash=token_hash(token), user_id=user_id, created_at=now, last_seen_at=now,
                                    expires_at=now + timedelta(hours=max_hours), ip=(ip or None) and ip[:45],
                                    user_agent=clean_user_agent(user_agent)))
        return token

    def resolve_session(self, token: str, idle_minutes: float, ip: str | None = None) -> tuple[int, Actor] | None:
        """The session id and its user for a cookie's token, when the session is open and the user active; an idle
        or expired session is ended here (one ``session.end`` row)."""
        now = self._clock()
        with self._sessions() as session:
            found = session.execute(select(UserSession, User).join(User, User.id == UserSession.user_id)
                                    .where(UserSession.token_hash == token_hash(token))).first()
        if found is None:
            return None
        stored, user = found
        if stored.revoked_at is not None or not user.active:
            return None
        ended = ("expired" if aware(stored.expires_at) <= now else
                 "idle" if utc(stored.last_seen_at) + timedelta(minutes=idle_minutes) <= now else None)
        if ended is not None:
            self._close(stored.id, user, ended, ip, now)
            return None
        if now - utc(stored.last_seen_at) >= TOUCH_EVERY:
            with self._write() as session:
                session.execute(update(UserSession).where(UserSession.id == stored.id).values(last_seen_at=now))
        return stored.id, Actor(user.id, user.username, Role(user.role))

    def _close(self, session_id: int, user: User, reason: str, ip: str | None, now: datetime) -> None:
        with self._write() as session:
            done = session.execute(update(UserSession).where(UserSession.id == session_id,
                                                             UserSession.revoked_at.is_(None))
                                   .values(revoked_at=now, revoked_reason=reason))
            if done.rowcount:
                self._audit(session, Actor(user.id, user.username, Role(user.role)), "session.end", "ok",
                            "session", str(session_id), None, {"reason": reason}, ip)

    def list_sessions(self, principal: Principal, everyone: bool = False,
                      include_ended: bool = False) -> list[SessionInfo]:
        """The principal's sessions, or everyone's (admin), newest first; not audited (a read)."""
        with self._sessions() as session:
            actor = self._actor(session, principal)
            if everyone:
                workflow.require(actor.role, Action.MANAGE_USERS, actor.username)
            query = (select(UserSession, User.username).join(User, User.id == UserSession.user_id)
                     .order_by(UserSession.id.desc()).limit(500))
            if not everyone:
                query = query.where(UserSession.user_id == actor.user_id)
            if not include_ended:
                query = query.where(UserSession.revoked_at.is_(None), UserSession.expires_at > self._clock())
            return [SessionInfo(s.id, name, utc(s.created_at), utc(s.last_seen_at), utc(s.expires_at), s.ip,
                                s.user_agent, aware(s.revoked_at), s.revoked_reason)
                    for s, name in session.execute(query)]

    def end_session(self, principal: Principal, session_id: int, ip: str | None = None) -> None:
        """End one session: the principal's own, or anyone's for an admin (``session.end``, audited either way)."""

        def body(session: Session, actor: Actor) -> None:
            stored = session.get(UserSession, session_id)
            if stored is None:
                raise NotFoundError(f"there is no session #{session_id}")
            if stored.user_id != actor.user_id and not workflow.allowed(actor.role, Action.MANAGE_USERS):
                raise PermissionDenied(f"{actor.username} may end only their own sessions")
            if stored.revoked_at is not None:
                raise NotFoundError(f"session #{session_id} has ended already")
            now = self._clock()
            stored.revoked_at = now
            stored.revoked_reason = "ended by the user" if stored.user_id == actor.user_id else "ended by an admin"
            self._audit(session, actor, "session.end", "ok", "session", str(session_id), None,
                        {"reason": stored.revoked_reason, "user_id": stored.user_id}, ip)

        self._run(principal, "session.end", "session", str(session_id), ip, body)
