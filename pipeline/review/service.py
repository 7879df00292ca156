"""The review operations the dashboard and the command line call, on the store.

Every operation runs in one transaction and writes exactly one ``audit_log`` row (:mod:`pipeline.review.base`).
A bulk action writes one row per item, or one ``denied`` row when it is refused (then nothing of it is kept).
Reads (lists, the audit query) are not audited; every write, login and export is. Accounts, logins and their
throttle live in :mod:`pipeline.review.accounts`, dashboard sessions in :mod:`pipeline.review.sessions`, the trends'
levels in :mod:`pipeline.review.levels`, review studies in :mod:`pipeline.review.study`; this module
adds the review workflow, the exports and the audit log's reading and verification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.errors import InputError, NotFoundError, UserError
from pipeline.review import workflow
from pipeline.review.accounts import AccountOperations, UserInfo
from pipeline.review.base import (
    AccountLockedError,
    AuthenticationError,
    CommandLine,
    ConcurrentEditError,
    Principal,
    Refused,
    utc,
)
from pipeline.review.levels import LevelOperations
from pipeline.review.study import StudyOperations
from pipeline.review.timing import TimingOperations, close_item_clock, open_item_clock
from pipeline.review.workflow import Action, Actor, Decision, ItemState, PermissionDenied, State
from pipeline.store.audit_chain import ChainReport, verify_engine
from pipeline.store.review_schema import AuditEntry, ReviewItem, User
from pipeline.store.schema import Configuration, Image, ModelSet

__all__ = ["AccountLockedError", "AuditRecord", "AuthenticationError", "CommandLine", "ConcurrentEditError",
           "ItemInfo", "ItemKey", "ReviewService", "UserInfo"]

MAX_COMMENT = 2000  # characters of a review comment


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


class ReviewService(TimingOperations, AccountOperations, LevelOperations, StudyOperations):
    """The review operations on one store (see the module docstring), with the review time they measure
    (:mod:`pipeline.review.timing`: starting or reopening an item opens its clock, the decision closes it), the
    trends' levels (:mod:`pipeline.review.levels`) and the review studies (:mod:`pipeline.review.study`)."""

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
              transition: Callable[[ItemState, Actor], ItemState], ip: str | None,
              volumes: Mapping[ItemKey, float] | None = None) -> ItemInfo:
        """One workflow transition of one item, its review clock and its audit row, inside the caller's transaction
        (``volumes``: the items' flagged mL as the reviewer's worklist shows them, kept with the clock)."""
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
        if action in (Action.START_REVIEW, Action.REOPEN) and actor.user_id is not None:
            open_item_clock(session, item, actor.user_id, now, (volumes or {}).get(key))
        if action == Action.DECIDE and actor.user_id is not None:
            close_item_clock(session, item, actor.user_id, now, self._review.idle_cap_seconds)
        after = self._info(session, item)
        self._audit(session, actor, f"review.{action.value}", "ok", "review_item", key.text(),
                    self._snapshot(before) if before else None, self._snapshot(after), ip)
        return after

    def _transition(self, action: Action, decision: Decision | str | None,
                    comment: str | None) -> Callable[[ItemState, Actor], ItemState]:
        if action == Action.START_REVIEW:
            return workflow.start_review
        if action == Action.DECIDE:
            return lambda item, actor: workflow.decide(item, actor, decision or "", _comment(comment))
        if action == Action.REOPEN:
            return workflow.reopen
        if action == Action.APPROVE:
            return workflow.approve
        raise InputError(f"{action} is not a review action")

    def _one(self, principal: Principal, action: Action, key: ItemKey, expected_version: int | None,
             ip: str | None, decision: Decision | str | None = None, comment: str | None = None,
             flagged_ml: float | None = None) -> ItemInfo:
        transition = self._transition(action, decision, comment)
        volumes = {key: flagged_ml} if flagged_ml is not None else None
        return self._run(principal, f"review.{action.value}", "review_item", key.text(), ip,
                         lambda session, actor: self._step(session, actor, action, key, expected_version,
                                                           transition, ip, volumes))

    def start_review(self, principal: Principal, key: ItemKey, *, expected_version: int | None = None,
                     ip: str | None = None, flagged_ml: float | None = None) -> ItemInfo:
        """pending → in_review (the item is created on first use); its clock opens (``flagged_ml``: its flagged
        volume on the reviewer's worklist)."""
        return self._one(principal, Action.START_REVIEW, key, expected_version, ip, flagged_ml=flagged_ml)

    def record_decision(self, principal: Principal, key: ItemKey, decision: Decision | str, comment: str | None,
                        *, expected_version: int | None = None, ip: str | None = None) -> ItemInfo:
        """in_review → reviewed with ``decision`` (edited/rejected need a comment)."""
        return self._one(principal, Action.DECIDE, key, expected_version, ip, decision, comment)

    def reopen(self, principal: Principal, key: ItemKey, *, expected_version: int | None = None,
               ip: str | None = None, flagged_ml: float | None = None) -> ItemInfo:
        """reviewed → in_review (editing a reviewed item); a new clock opens."""
        return self._one(principal, Action.REOPEN, key, expected_version, ip, flagged_ml=flagged_ml)

    def approve(self, principal: Principal, key: ItemKey, *, expected_version: int | None = None,
                ip: str | None = None) -> ItemInfo:
        """reviewed → approved, never by the item's reviewer."""
        return self._one(principal, Action.APPROVE, key, expected_version, ip)

    def bulk(self, principal: Principal, action: Action | str, keys: Sequence[ItemKey], *,
             decision: Decision | str | None = None, comment: str | None = None,
             ip: str | None = None, volumes: Mapping[ItemKey, float] | None = None) -> list[ItemInfo]:
        """The same action on many items in one transaction: one audit row per item, or nothing and one
        ``denied`` row naming the first item that was refused (``volumes``: flagged mL per item, for the clocks)."""
        checked = Action(action)
        transition = self._transition(checked, decision, comment)

        def body(session: Session, actor: Actor) -> list[ItemInfo]:
            if not keys:
                raise InputError("a bulk action needs at least one item")
            done = []
            for number, key in enumerate(keys, start=1):
                try:
                    done.append(self._step(session, actor, checked, key, None, transition, ip, volumes))
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
            self._deny(principal, f"export.{kind}", Refused(error, "export", object_id), ip)
            error.audited = True  # type: ignore[attr-defined]
            raise
        try:
            path = Path(produce())
        except Exception as error:
            with self._write() as session:
                self._audit(session, self._actor(session, principal), f"export.{kind}", "failure", "export",
                            object_id, None, {"reason": f"{type(error).__name__}: {error}"}, ip)
            raise
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            with self._write() as session:
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
            return [AuditRecord(e.id, utc(e.at), e.actor, e.actor_id, e.action, e.outcome, e.object_type,
                                e.object_id, e.before, e.after, e.ip) for e in session.scalars(query)]

    def verify_audit_log(self, principal: Principal) -> ChainReport:
        """Walk the audit log's hash chain (approver, admin or the command line); not audited (a read)."""
        self.check(principal, Action.VIEW_AUDIT)
        return verify_engine(self._sessions.kw["bind"])

    def record_refusal(self, principal: Principal | None, action: str, object_id: str, reason: str,
                       ip: str | None = None) -> None:
        """Audit a request refused before it reached an operation (a malformed callback or address): one ``denied``
        row, by the signed-in user (``anonymous`` without one)."""
        with self._write() as session:
            try:
                actor = self._actor(session, principal) if principal is not None else None
            except PermissionDenied:
                actor = None
            self._audit(session, actor or Actor(None, "anonymous", workflow.Role.VIEWER), action, "denied", "request",
                        object_id, None, {"reason": reason}, ip)


def _comment(comment: str | None) -> str | None:
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InputError(f"a comment has at most {MAX_COMMENT} characters, this one {len(comment)}")
    return comment
