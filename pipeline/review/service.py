"""The review operations the dashboard and the command line call, on the store.

Every operation runs in one transaction and writes exactly one ``audit_log`` row: ``outcome`` ``ok`` with the
object's state before and after, or, when it is refused (permission matrix, workflow, self-approval, stale version,
bad input), ``denied`` with the reason, written in a transaction of its own after the refused one rolled back.
A bulk action writes one row per item, or one ``denied`` row when it is refused (then nothing of it is kept).
Reads (lists, the audit query) are not audited; every write, login and export is.

Actors are user ids, re-read on every call (a role change or deactivation applies at once), or
:class:`CommandLine`: whoever holds the store's credentials, with admin rights, audited as ``cli:<os user>``;
the command line can manage users and export, never review or approve.

Logins are throttled: :data:`MAX_FAILED_LOGINS` consecutive failures lock the account for :data:`LOCK_MINUTES`;
while locked, the password is not even checked. Unknown usernames cost the same hash check as known ones.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.security import check_password_hash, generate_password_hash

from pipeline.errors import InputError, NotFoundError, RefusedError, UserError
from pipeline.review import workflow
from pipeline.review.workflow import Action, Actor, Decision, ItemState, PermissionDenied, Role, State, WorkflowError
from pipeline.store.review_schema import AuditEntry, ReviewItem, User
from pipeline.store.schema import Configuration, Image, ModelSet, utcnow

log = logging.getLogger(__name__)

MAX_FAILED_LOGINS = 5
LOCK_MINUTES = 15
MIN_PASSWORD_LENGTH = 12
PASSWORD_METHOD = "scrypt"
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,64}$")


class ConcurrentEditError(WorkflowError):
    """The item changed since the caller read it (optimistic locking); reload and try again."""


class AuthenticationError(RefusedError):
    """A login that failed; the message never says whether the username exists."""


class AccountLockedError(AuthenticationError):
    """Too many failed logins: the account is locked for a while."""


@dataclass(frozen=True)
class CommandLine:
    """The command line as an actor: the operating-system user who holds the store's credentials."""

    os_user: str = field(default_factory=getpass.getuser)


Principal = int | CommandLine


@dataclass(frozen=True)
class ItemKey:
    """A review item: one structure (class index) of one case (image id) under one configuration (id)."""

    image_id: int
    configuration_id: int
    class_index: int

    def text(self) -> str:
        """``image/configuration/class``, the audit log's object id."""
        return f"{self.image_id}/{self.configuration_id}/{self.class_index}"


@dataclass(frozen=True)
class UserInfo:
    """A user as callers see it (never the password hash)."""

    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime
    last_login_at: datetime | None
    locked_until: datetime | None


@dataclass(frozen=True)
class ItemInfo:
    """A review item after an operation."""

    key: ItemKey
    case: str
    configuration: str
    structure: str
    state: State
    decision: Decision | None
    comment: str | None
    reviewer: str | None
    approver: str | None
    version: int


@dataclass(frozen=True)
class AuditRecord:
    """One audit row, as the audit page lists it."""

    id: int
    at: datetime
    actor: str
    actor_id: int | None
    action: str
    outcome: str
    object_type: str
    object_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None


class _Refused(Exception):
    """Internal: a refusal already rolled back, to be audited as ``denied`` and re-raised."""

    def __init__(self, error: Exception, object_type: str, object_id: str | None) -> None:
        super().__init__(str(error))
        self.error, self.object_type, self.object_id = error, object_type, object_id


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they are UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _aware(moment: datetime | None) -> datetime | None:
    return _utc(moment) if moment is not None else None


def _user_info(user: User) -> UserInfo:
    return UserInfo(user.id, user.username, Role(user.role), user.active, _utc(user.created_at),
                    _aware(user.last_login_at), _aware(user.locked_until))


class ReviewService:
    """The review operations on one store (see the module docstring)."""

    def __init__(self, engine: Engine, *, password_method: str = PASSWORD_METHOD,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._password_method = password_method
        self._clock = clock

    @cached_property
    def _dummy_hash(self) -> str:
        """A hash to check unknown usernames against, so they cost the time of a known one."""
        return generate_password_hash("not a password", method=self._password_method)

    # ------------------------------------------------------------------ actors and the audit log

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
        session.add(AuditEntry(at=self._clock(), actor_id=actor.user_id, actor=actor.username[:100], action=action,
                               outcome=outcome, object_type=object_type,
                               object_id=object_id[:200] if object_id else None, before=before, after=after,
                               ip=ip[:45] if ip else None))

    def _deny(self, principal: Principal, action: str, refused: _Refused, ip: str | None) -> None:
        """Write the one ``denied`` row of a refused operation, in its own transaction."""
        with self._sessions.begin() as session:
            try:
                actor = self._actor(session, principal)
            except PermissionDenied:
                actor = Actor(None, f"user#{principal}", Role.VIEWER)
            reason = f"{type(refused.error).__name__}: {refused.error}"
            self._audit(session, actor, action, "denied", refused.object_type, refused.object_id, None,
                        {"reason": reason}, ip)
        log.info("denied %s by %s: %s", action, principal, refused.error)

    def _run(self, principal: Principal, action: str, object_type: str, object_id: str | None, ip: str | None,
             body: Callable[[Session, Actor], Any]) -> Any:
        """Run ``body`` in one transaction; a refusal is audited as ``denied`` and re-raised."""
        try:
            try:
                with self._sessions.begin() as session:
                    return body(session, self._actor(session, principal))
            except StaleDataError as error:
                raise _Refused(ConcurrentEditError("the item changed meanwhile: reload it"), object_type,
                               object_id) from error
            except IntegrityError as error:
                raise _Refused(ConcurrentEditError(f"conflicting write: {str(error).splitlines()[0]}"), object_type,
                               object_id) from error
            except UserError as error:
                raise _Refused(error, object_type, object_id) from error
        except _Refused as refused:
            self._deny(principal, action, refused, ip)
            raise refused.error from None

    # ------------------------------------------------------------------ users and logins

    def create_user(self, principal: Principal, username: str, password: str, role: Role | str,
                    ip: str | None = None) -> UserInfo:
        """A new active local account (admin or the command line). Passwords need MIN_PASSWORD_LENGTH chars."""

        def body(session: Session, actor: Actor) -> UserInfo:
            workflow.require(actor.role, Action.MANAGE_USERS, actor.username)
            if not USERNAME.match(username):
                raise InputError(f"username {username!r} must be 2-64 characters of letters, digits and ._@-")
            if len(password) < MIN_PASSWORD_LENGTH:
                raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
            try:
                checked = Role(role)
            except ValueError as error:
                raise InputError(f"unknown role {role!r}: use one of {', '.join(Role)}") from error
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                raise InputError(f"a user named {username!r} exists already")
            user = User(username=username, role=checked.value, active=True, failed_logins=0,
                        password_hash=generate_password_hash(password, method=self._password_method),
                        created_at=self._clock())
            session.add(user)
            session.flush()
            self._audit(session, actor, "user.create", "ok", "user", str(user.id), None,
                        {"username": username, "role": checked.value, "active": True}, ip)
            return _user_info(user)

        return self._run(principal, "user.create", "user", username, ip, body)

    def update_user(self, principal: Principal, username: str, *, role: Role | str | None = None,
                    active: bool | None = None, password: str | None = None, ip: str | None = None) -> UserInfo:
        """Change an account's role, deactivate or reactivate it, or set a new password (admin or the command line);
        one ``user.update`` audit row with the changed fields before → after (a password only as "changed").
        Reactivating or setting a password also clears a login lock."""

        def body(session: Session, actor: Actor) -> UserInfo:
            workflow.require(actor.role, Action.MANAGE_USERS, actor.username)
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFoundError(f"there is no user named {username!r}")
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            if role is not None:
                try:
                    checked = Role(role)
                except ValueError as error:
                    raise InputError(f"unknown role {role!r}: use one of {', '.join(Role)}") from error
                before["role"], after["role"], user.role = user.role, checked.value, checked.value
            if active is not None:
                before["active"], after["active"], user.active = user.active, active, active
            if password is not None:
                if len(password) < MIN_PASSWORD_LENGTH:
                    raise InputError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
                user.password_hash = generate_password_hash(password, method=self._password_method)
                before["password"], after["password"] = "unchanged", "changed"
            if not after:
                raise InputError("nothing to change: give a role, active or a password")
            if active or password is not None:
                user.failed_logins, user.locked_until = 0, None
            self._audit(session, actor, "user.update", "ok", "user", str(user.id), before, after, ip)
            return _user_info(user)

        return self._run(principal, "user.update", "user", username, ip, body)

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
        """The user for a correct password; :class:`AuthenticationError` otherwise (one audit row either way)."""
        now = self._clock()
        with self._sessions.begin() as session:
            user = session.scalar(select(User).where(User.username == username).with_for_update())
            locked_until = _aware(user.locked_until) if user is not None else None
            if user is None or not user.active:
                check_password_hash(self._dummy_hash, password)
                outcome, detail = "failure", {"reason": "unknown user" if user is None else "deactivated"}
            elif locked_until is not None and locked_until > now:
                outcome, detail = "locked", {"locked_until": locked_until.isoformat()}
            elif check_password_hash(user.password_hash, password):
                user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
                outcome, detail = "ok", {"role": user.role}
            else:
                user.failed_logins += 1
                detail = {"failed_logins": user.failed_logins}
                if user.failed_logins >= MAX_FAILED_LOGINS:
                    user.failed_logins, user.locked_until = 0, now + timedelta(minutes=LOCK_MINUTES)
                    detail["locked_until"] = user.locked_until.isoformat()
                outcome = "failure"
            actor = Actor(user.id if user is not None else None, (user.username if user else username)[:100],
                          Role(user.role) if user else Role.VIEWER)
            self._audit(session, actor, "login", outcome, "user", str(user.id) if user else None, None, detail, ip)
            info = _user_info(user) if user is not None else None
        if outcome == "locked":
            raise AccountLockedError(f"too many failed logins: try again after {LOCK_MINUTES} minutes")
        if outcome != "ok" or info is None:
            raise AuthenticationError("invalid username or password")
        return info

    def authenticate_external(self, username: str, issuer: str, ip: str | None = None) -> UserInfo:
        """The active local user ``username``, whom the identity provider ``issuer`` has authenticated (single
        sign-on); :class:`AuthenticationError` when no active account has that name. One ``login`` audit row either
        way, with ``{"method": "oidc", "issuer": issuer}``.

        The provider authenticates, this store authorizes: the account and its role must exist here already, and a
        deactivated one is refused. The password throttle is neither checked nor reset (it guards the password,
        which the provider does not use)."""
        detail: dict[str, Any] = {"method": "oidc", "issuer": issuer}
        with self._sessions.begin() as session:
            user = session.scalar(select(User).where(User.username == username).with_for_update())
            if user is None or not user.active:
                outcome = "failure"
                detail["reason"] = "unknown user" if user is None else "deactivated"
                actor = Actor(user.id if user else None, username[:100], Role(user.role) if user else Role.VIEWER)
            else:
                outcome, user.last_login_at = "ok", self._clock()
                detail["role"] = user.role
                actor = Actor(user.id, user.username, Role(user.role))
            self._audit(session, actor, "login", outcome, "user", str(user.id) if user else None, None, detail, ip)
            info = _user_info(user) if outcome == "ok" and user is not None else None
        if info is None:
            raise AuthenticationError(f"the identity provider signed you in as {username!r}, but this dashboard has "
                                      "no active account of that name: ask an administrator to create (or "
                                      "reactivate) it")
        return info

    def record_logout(self, user_id: int, ip: str | None = None) -> None:
        """Audit the end of ``user_id``'s dashboard session: one ``logout`` row (also for a deactivated account,
        whose session is ending all the same)."""
        with self._sessions.begin() as session:
            user = session.get(User, user_id)
            actor = (Actor(user.id, user.username, Role(user.role)) if user is not None
                     else Actor(None, f"user#{user_id}", Role.VIEWER))
            self._audit(session, actor, "logout", "ok", "user", str(user_id), None, None, ip)

    # ------------------------------------------------------------------ the review workflow

    def _item(self, session: Session, key: ItemKey, create: bool) -> ReviewItem:
        item = session.scalar(select(ReviewItem).where(
            ReviewItem.image_id == key.image_id, ReviewItem.configuration_id == key.configuration_id,
            ReviewItem.class_index == key.class_index))
        if item is not None:
            return item
        image = session.get(Image, key.image_id)
        configuration = session.get(Configuration, key.configuration_id)
        if image is None or configuration is None:
            raise NotFoundError(f"no case #{key.image_id} or configuration #{key.configuration_id} in the store")
        labels = session.get_one(ModelSet, configuration.model_set_id).labels
        if not 0 <= key.class_index < len(labels):
            raise NotFoundError(f"class {key.class_index} is not one of the model's {len(labels)} labels")
        item = ReviewItem(image_id=key.image_id, configuration_id=key.configuration_id,
                          class_index=key.class_index, structure=str(labels[key.class_index]),
                          state=State.PENDING.value, created_at=self._clock())
        if create:
            session.add(item)
        return item

    def _info(self, session: Session, item: ReviewItem) -> ItemInfo:
        def name(user_id: int | None) -> str | None:
            return session.get_one(User, user_id).username if user_id is not None else None

        return ItemInfo(
            key=ItemKey(item.image_id, item.configuration_id, item.class_index),
            case=session.get_one(Image, item.image_id).name,
            configuration=session.get_one(Configuration, item.configuration_id).name,
            structure=item.structure, state=State(item.state),
            decision=Decision(item.decision) if item.decision else None, comment=item.comment,
            reviewer=name(item.reviewer_id), approver=name(item.approver_id), version=item.version or 0,
        )

    @staticmethod
    def _snapshot(info: ItemInfo) -> dict[str, Any]:
        return {"case": info.case, "configuration": info.configuration, "structure": info.structure,
                "state": info.state.value, "decision": info.decision.value if info.decision else None,
                "comment": info.comment, "reviewer": info.reviewer, "approver": info.approver,
                "version": info.version}

    def _step(self, session: Session, actor: Actor, action: Action, key: ItemKey, expected_version: int | None,
              transition: Callable[[ItemState, Actor], ItemState], ip: str | None) -> ItemInfo:
        """One workflow transition of one item and its audit row, inside the caller's transaction."""
        item = self._item(session, key, create=action == Action.START_REVIEW)
        current = item.version or 0
        if expected_version is not None and expected_version != current:
            raise ConcurrentEditError(f"the item is at version {current}, not {expected_version}: someone changed "
                                      "it meanwhile; reload it")
        before = self._info(session, item) if item.version else None
        old = ItemState(State(item.state), Decision(item.decision) if item.decision else None, item.comment,
                        item.reviewer_id, item.approver_id)
        new = transition(old, actor)
        now = self._clock()
        item.state, item.comment = new.state.value, new.comment
        item.decision = new.decision.value if new.decision else None
        item.reviewer_id, item.approver_id = new.reviewer_id, new.approver_id
        item.updated_at = now
        if new.state == State.REVIEWED:
            item.reviewed_at = now
        if new.state == State.APPROVED:
            item.approved_at = now
        session.flush()
        after = self._info(session, item)
        self._audit(session, actor, f"review.{action.value}", "ok", "review_item", key.text(),
                    self._snapshot(before) if before else None, self._snapshot(after), ip)
        return after

    def _transition(self, action: Action, decision: Decision | str | None,
                    comment: str | None) -> Callable[[ItemState, Actor], ItemState]:
        if action == Action.START_REVIEW:
            return workflow.start_review
        if action == Action.DECIDE:
            return lambda item, actor: workflow.decide(item, actor, decision or "", comment)
        if action == Action.REOPEN:
            return workflow.reopen
        if action == Action.APPROVE:
            return workflow.approve
        raise InputError(f"{action} is not a review action")

    def _one(self, principal: Principal, action: Action, key: ItemKey, expected_version: int | None,
             ip: str | None, decision: Decision | str | None = None, comment: str | None = None) -> ItemInfo:
        transition = self._transition(action, decision, comment)
        return self._run(principal, f"review.{action.value}", "review_item", key.text(), ip,
                         lambda session, actor: self._step(session, actor, action, key, expected_version,
                                                           transition, ip))

    def start_review(self, principal: Principal, key: ItemKey, *, expected_version: int | None = None,
                     ip: str | None = None) -> ItemInfo:
        """pending → in_review (the item is created on first use)."""
        return self._one(principal, Action.START_REVIEW, key, expected_version, ip)

    def record_decision(self, principal: Principal, key: ItemKey, decision: Decision | str, comment: str | None,
                        *, expected_version: int | None = None, ip: str | None = None) -> ItemInfo:
        """in_review → reviewed with ``decision`` (edited/rejected need a comment)."""
        return self._one(principal, Action.DECIDE, key, expected_version, ip, decision, comment)

    def reopen(self, principal: Principal, key: ItemKey, *, expected_version: int | None = None,
               ip: str | None = None) -> ItemInfo:
        """reviewed → in_review (editing a reviewed item)."""
        return self._one(principal, Action.REOPEN, key, expected_version, ip)

    def approve(self, principal: Principal, key: ItemKey, *, expected_version: int | None = None,
                ip: str | None = None) -> ItemInfo:
        """reviewed → approved, never by the item's reviewer."""
        return self._one(principal, Action.APPROVE, key, expected_version, ip)

    def bulk(self, principal: Principal, action: Action | str, keys: Sequence[ItemKey], *,
             decision: Decision | str | None = None, comment: str | None = None,
             ip: str | None = None) -> list[ItemInfo]:
        """The same action on many items in one transaction: one audit row per item, or nothing and one
        ``denied`` row naming the first item that was refused."""
        checked = Action(action)
        transition = self._transition(checked, decision, comment)

        def body(session: Session, actor: Actor) -> list[ItemInfo]:
            if not keys:
                raise InputError("a bulk action needs at least one item")
            done = []
            for number, key in enumerate(keys, start=1):
                try:
                    done.append(self._step(session, actor, checked, key, None, transition, ip))
                except UserError as error:
                    raise type(error)(f"item {number} of {len(keys)} ({key.text()}): {error}") from error
            return done

        return self._run(principal, f"review.{checked.value}", "review_item", f"bulk of {len(keys)}", ip, body)

    # ------------------------------------------------------------------ exports and the audit log

    def export(self, principal: Principal, kind: str, object_id: str, produce: Callable[[], Path],
               ip: str | None = None, *, also: Action | None = None) -> Path:
        """Check the export permission (and ``also``, e.g. VIEW_AUDIT for the audit log), write the file with
        ``produce``, and audit it (path, size, SHA-256); an export that fails is audited as ``failure`` with the
        reason, a refused one as ``denied``."""
        try:
            self.check(principal, Action.EXPORT)
            if also is not None:
                self.check(principal, also)
        except PermissionDenied as error:
            self._deny(principal, f"export.{kind}", _Refused(error, "export", object_id), ip)
            raise
        try:
            path = Path(produce())
        except Exception as error:
            with self._sessions.begin() as session:
                self._audit(session, self._actor(session, principal), f"export.{kind}", "failure", "export",
                            object_id, None, {"reason": f"{type(error).__name__}: {error}"}, ip)
            raise
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            with self._sessions.begin() as session:
                self._audit(session, self._actor(session, principal), f"export.{kind}", "ok", "export", object_id,
                            None, {"path": str(path), "bytes": path.stat().st_size, "sha256": digest}, ip)
        except BaseException:
            path.unlink(missing_ok=True)  # an export that could not be audited is not kept
            raise
        return path

    def audit_entries(self, principal: Principal, *, actor: str | None = None, action: str | None = None,
                      outcome: str | None = None, since: datetime | None = None, until: datetime | None = None,
                      limit: int = 1000) -> list[AuditRecord]:
        """Audit rows, newest first, filtered (approver, admin or the command line); not audited (a read)."""
        self.check(principal, Action.VIEW_AUDIT)
        with self._sessions() as session:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if actor:
                query = query.where(AuditEntry.actor == actor)
            if action:
                query = query.where(AuditEntry.action.startswith(action, autoescape=True))
            if outcome:
                query = query.where(AuditEntry.outcome == outcome)
            if since:
                query = query.where(AuditEntry.at >= since)
            if until:
                query = query.where(AuditEntry.at < until)
            return [AuditRecord(e.id, _utc(e.at), e.actor, e.actor_id, e.action, e.outcome, e.object_type,
                                e.object_id, e.before, e.after, e.ip) for e in session.scalars(query)]
