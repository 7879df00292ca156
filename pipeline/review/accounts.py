"""Local accounts and logins: create and change users (an administrator or the command line), check passwords under
the login throttle (:mod:`pipeline.review.throttle`), single sign-on, logout, unlocking.

A change of password or role, and a deactivation, end every session of the user (:mod:`pipeline.review.sessions`);
so does a logout. Unknown usernames cost the same hash check as known ones, and the answer never says which it was.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from pipeline.errors import InputError, NotFoundError
from pipeline.review import throttle, workflow
from pipeline.review.base import AccountLockedError, AuthenticationError, Principal, aware, utc
from pipeline.review.sessions import SessionOperations, revoke_all
from pipeline.review.workflow import Action, Actor, Role
from pipeline.store.review_schema import User

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # longer ones are refused unchecked (hashing megabytes is a denial of service)
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,64}$")


@dataclass(frozen=True)
class UserInfo:
    """A user as callers see it (never the password hash)."""

    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None


def _user_info(user: User) -> UserInfo:
    return UserInfo(user.id, user.username, Role(user.role), user.active, utc(user.created_at),
                    aware(user.last_login_at))


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError as error:
        raise InputError(f"unknown role {str(role)[:40]!r}: use one of {', '.join(Role)}") from error


def _password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters (and at most "
                         f"{MAX_PASSWORD_LENGTH})")
    return password


class AccountOperations(SessionOperations):
    """Users, logins and the throttle's unlock (see the module's description)."""

    @cached_property
    def _dummy_hash(self) -> str:
        """A hash to check unknown usernames against, so they cost the time of a known one."""
        return generate_password_hash("not a password", method=self._password_method)

    def create_user(self, principal: Principal, username: str, password: str, role: Role | str,
                    ip: str | None = None) -> UserInfo:
        """A new active local account (admin or the command line). Passwords need MIN_PASSWORD_LENGTH chars."""

        def body(session: Session, actor: Actor) -> UserInfo:
            workflow.require(actor.role, Action.MANAGE_USERS, actor.username)
            if not USERNAME.match(username):
                raise InputError(f"username {username[:80]!r} must be 2-64 characters of letters, digits and ._@-")
            checked = _role(role)
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise InputError(f"a user named {username!r} exists already")
            user = User(username=username, role=checked.value, active=True, created_at=self._clock(),
                        password_hash=generate_password_hash(_password(password), method=self._password_method))
            session.add(user)
            session.flush()
            self._audit(session, actor, "user.create", "ok", "user", str(user.id), None,
                        {"username": username, "role": checked.value, "active": True}, ip)
            return _user_info(user)

        return self._run(principal, "user.create", "user", username[:200], ip, body)

    def update_user(self, principal: Principal, username: str, *, role: Role | str | None = None,
                    active: bool | None = None, password: str | None = None, unlock: bool = False,
                    ip: str | None = None) -> UserInfo:
        """Change an account's role, deactivate or reactivate it, set a new password or clear its login throttle
        (admin or the command line); one ``user.update`` audit row with the changed fields before → after (a
        password only as "changed"). A new password, a new role or a deactivation ends every session of the user
        (``sessions_ended`` in the row when there were any); reactivating or setting a password also unlocks."""

        def body(session: Session, actor: Actor) -> UserInfo:
            workflow.require(actor.role, Action.MANAGE_USERS, actor.username)
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFoundError(f"there is no user named {username[:80]!r}")
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            ended_by: list[str] = []
            if role is not None:
                checked = _role(role)
                before["role"], after["role"], user.role = user.role, checked.value, checked.value
                ended_by += ["role"] if before["role"] != checked.value else []
            if active is not None:
                before["active"], after["active"], user.active = user.active, active, active
                ended_by += [] if active else ["deactivated"]
            if password is not None:
                user.password_hash = generate_password_hash(_password(password), method=self._password_method)
                before["password"], after["password"] = "unchanged", "changed"
                ended_by.append("password")
            if unlock:
                after["unlocked"] = throttle.unlock(session, account=username)
            elif active or password is not None:
                throttle.unlock(session, account=username)
            if not after:
                raise InputError("nothing to change: give a role, active, a password or unlock")
            if ended_by:
                ended = revoke_all(session, user.id, ", ".join(ended_by), self._clock())
                if ended:
                    after["sessions_ended"] = ended
            self._audit(session, actor, "user.update", "ok", "user", str(user.id), before, after, ip)
            return _user_info(user)

        return self._run(principal, "user.update", "user", username[:200], ip, body)

    def unlock_logins(self, principal: Principal, account: str | None = None, client: str | None = None,
                      ip: str | None = None) -> int:
        """Clear the login throttle of a typed username (every client) or of an address (admin), whether or not an
        account has that name; one ``user.unlock`` row; how many counters were cleared."""
        target = f"account {account}" if account else f"client {client}"

        def body(session: Session, actor: Actor) -> int:
            workflow.require(actor.role, Action.MANAGE_USERS, actor.username)
            if not (account or client):
                raise InputError("unlock needs an account or an address")
            cleared = throttle.unlock(session, account=account, client=client)
            self._audit(session, actor, "user.unlock", "ok", "login_throttle", target, None, {"cleared": cleared}, ip)
            return cleared

        return self._run(principal, "user.unlock", "login_throttle", target[:200], ip, body)

    def blocked_logins(self, principal: Principal) -> list[tuple[str, str, str, int, datetime]]:
        """(scope, client, account, failures, blocked until) of every counter that refuses logins now (admin)."""
        self.check(principal, Action.MANAGE_USERS)
        with self._sessions() as session:
            return [(r.scope, r.client, r.account, r.failures, utc(r.blocked_until))
                    for r in throttle.blocked(session, self._clock()) if r.blocked_until is not None]

    def check(self, principal: Principal, action: Action | str) -> Actor:
        """The actor, when it is an active user (or the command line) allowed to ``action``; else
        :class:`PermissionDenied`. Not audited: the page and callback guard of the dashboard, and of reads."""
        with self._sessions() as session:
            actor = self._actor(session, principal)
        workflow.require(actor.role, action, actor.username)
        return actor

    def list_users(self, principal: Principal) -> list[UserInfo]:
        """Every account (admin or the command line); not audited (a read)."""
        self.check(principal, Action.MANAGE_USERS)
        with self._sessions() as session:
            return [_user_info(u) for u in session.scalars(select(User).order_by(User.username))]

    def authenticate(self, username: str, password: str, ip: str | None = None) -> UserInfo:
        """The user for a correct password; :class:`AuthenticationError` otherwise, :class:`AccountLockedError`
        while the throttle refuses this client or account (one audit row either way)."""
        now = self._clock()
        with self._write() as session:
            verdict = throttle.reserve(session, ip, username, now)
            if verdict.blocked_until is not None:
                user = self._named(session, username)
                self._audit(session, self._login_actor(user, username), "login", "locked", "user",
                            str(user.id) if user else None, None,
                            {"scope": verdict.scope, "locked_until": verdict.blocked_until.isoformat()}, ip)
        if verdict.blocked_until is not None:
            wait = max(1, math.ceil((verdict.blocked_until - now).total_seconds()))
            raise AccountLockedError(f"too many failed logins: try again in {wait} s", wait)
        with self._sessions() as session:
            user = self._named(session, username)
        right = False
        if user is None or not user.active or len(password) > MAX_PASSWORD_LENGTH:
            check_password_hash(self._dummy_hash, password[:MAX_PASSWORD_LENGTH])
        else:
            right = check_password_hash(user.password_hash, password)
        with self._write() as session:
            detail: dict[str, Any]
            if right and user is not None:
                throttle.settle(session, ip, username)
                stored = session.get_one(User, user.id)
                stored.last_login_at = now
                detail, user = {"role": stored.role}, stored
            else:
                reason = "unknown user" if user is None else "deactivated" if not user.active else "wrong password"
                detail = {"reason": reason, "failures": verdict.pair_failures}
                if verdict.pair_blocked_until is not None:
                    detail["locked_until"] = verdict.pair_blocked_until.isoformat()
            self._audit(session, self._login_actor(user, username), "login", "ok" if right else "failure", "user",
                        str(user.id) if user else None, None, detail, ip)
        if not right or user is None:
            raise AuthenticationError("invalid username or password")
        return _user_info(user)

    @staticmethod
    def _named(session: Session, username: str) -> User | None:
        """The user of a typed name (None for a name no account can have)."""
        if not USERNAME.match(username):
            return None
        return session.scalar(select(User).where(User.username == username))

    @staticmethod
    def _login_actor(user: User | None, typed: str) -> Actor:
        return Actor(user.id if user else None, (user.username if user else typed)[:100],
                     Role(user.role) if user else Role.VIEWER)

    def authenticate_external(self, username: str, issuer: str, ip: str | None = None) -> UserInfo:
        """The active local user ``username``, whom the identity provider ``issuer`` has authenticated (single
        sign-on); :class:`AuthenticationError` when no active account has that name. One ``login`` audit row either
        way, with ``{"method": "oidc", "issuer": issuer}``.

        The provider authenticates, this store authorizes: the account and its role must exist here already, and a
        deactivated one is refused. The password throttle is neither checked nor reset (it guards the password,
        which the provider does not use)."""
        detail: dict[str, Any] = {"method": "oidc", "issuer": issuer}
        with self._write() as session:
            user = session.scalar(select(User).where(User.username == username).with_for_update())
            if user is None or not user.active:
                outcome = "failure"
                detail["reason"] = "unknown user" if user is None else "deactivated"
            else:
                outcome, user.last_login_at = "ok", self._clock()
                detail["role"] = user.role
            self._audit(session, self._login_actor(user, username), "login", outcome, "user",
                        str(user.id) if user else None, None, detail, ip)
            info = _user_info(user) if outcome == "ok" and user is not None else None
        if info is None:
            raise AuthenticationError(f"the identity provider signed you in as {username!r}, but this dashboard has "
                                      "no active account of that name: ask an administrator to create (or "
                                      "reactivate) it")
        return info

    def record_logout(self, user_id: int, ip: str | None = None) -> int:
        """End every session of ``user_id`` and audit it: one ``logout`` row (also for a deactivated account, whose
        session is ending all the same); how many sessions ended."""
        with self._write() as session:
            user = session.get(User, user_id)
            actor = (Actor(user.id, user.username, Role(user.role)) if user is not None
                     else Actor(None, f"user#{user_id}", Role.VIEWER))
            ended = revoke_all(session, user_id, "logout", self._clock())
            self._audit(session, actor, "logout", "ok", "user", str(user_id), None, {"sessions_ended": ended}, ip)
        return ended
