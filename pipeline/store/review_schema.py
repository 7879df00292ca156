"""The review tables: local users, their dashboard sessions and login throttles, review items (one per case ×
configuration × structure), the time spent reviewing them and the audit log.

They share :class:`pipeline.store.schema.Base`, so Alembic (``migrations/versions/0002_review.py``, ``0005``) and
``alembic check`` see them. ``audit_log`` is append-only and hash-chained (:mod:`pipeline.store.audit_chain`): the
migrations install triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), and any INSERT that does not
extend the chain on SQLite; users are deactivated, never deleted (the audit log, sessions and review items reference
them without cascades).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.store.schema import Base, utcnow

ROLES = ("viewer", "reviewer", "approver", "admin")
STATES = ("pending", "in_review", "reviewed", "approved")
DECISIONS = ("accepted", "edited", "rejected")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(Base):
    """A local account. ``password_hash`` is werkzeug's ``method$salt$hash`` string (scrypt), never the password.
    Failed logins are counted in :class:`LoginThrottle`, per account, client and pair.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="ck_users_role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()


class ReviewItem(Base):
    """The review of one structure (class index) of one case under one configuration.

    ``state``: pending → in_review → reviewed (``decision`` accepted / edited / rejected, ``comment``) → approved.
    ``reviewer_id`` is who recorded the decision (or holds the item in review), ``approver_id`` who approved it.
    ``version`` is SQLAlchemy's optimistic-locking counter: a write based on a stale read fails.
    """

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("image_id", "configuration_id", "class_index"),
        CheckConstraint(_one_of("state", STATES), name="ck_review_items_state"),
        CheckConstraint(f"decision IS NULL OR {_one_of('decision', DECISIONS)}", name="ck_review_items_decision"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), index=True)
    class_index: Mapped[int] = mapped_column(Integer)
    structure: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    decision: Mapped[str | None] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approver_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column()
    approved_at: Mapped[datetime | None] = mapped_column()
    version: Mapped[int] = mapped_column(Integer)
    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}


class ReviewTime(Base):
    """Time one user spent on one review item (``region_rank`` NULL: from starting its review to the decision) or on
    one of its regions (``region_rank``: the region opened in the slice browser at ``budget``).

    ``seconds`` is active time: the sum of the gaps between the browser's activity reports, each capped
    (:mod:`pipeline.review.timing`). ``flagged_ml`` is the item's (or region's) flagged volume when it was opened;
    ``closed_at`` is set by the decision (items) and stays NULL for regions.
    """

    __tablename__ = "review_time"
    __table_args__ = (Index("ix_review_time_user_open", "user_id", "closed_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[int] = mapped_column(ForeignKey("configurations.id", ondelete="CASCADE"), index=True)
    class_index: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    region_rank: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[float | None] = mapped_column(Float)
    flagged_ml: Mapped[float | None] = mapped_column(Float)
    opened_at: Mapped[datetime] = mapped_column()
    last_active_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AuditEntry(Base):
    """One row of the append-only audit log: who did what to which object, when, from where, before → after.

    ``actor_id`` is NULL for the command line and for logins with an unknown username; ``actor`` always holds a
    name (the username, ``cli:<os user>``, or the name that was typed). ``outcome`` is ``ok``, ``denied`` (refused
    by the permission matrix, the workflow, a stale version or a malformed request) or ``failure`` / ``locked`` for
    logins. ``db_user`` is the database role that wrote the row (PostgreSQL; NULL on SQLite); ``prev_hash`` and
    ``row_hash`` chain the rows (:mod:`pipeline.store.audit_chain`).
    """

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(45))
    db_user: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class UserSession(Base):
    """A signed-in dashboard session. The browser's cookie holds a random token; only its SHA-256 is stored here.

    It ends at ``revoked_at`` (``revoked_reason``: logout, password, role, deactivated, ended by the user or an
    admin) or when it is idle or older than the settings allow (``QA_SESSION_IDLE_MINUTES``, ``QA_SESSION_MAX_HOURS``:
    ``expires_at`` is the absolute end). ``last_seen_at`` is refreshed at most once a minute.
    """

    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class LoginThrottle(Base):
    """Failed-login counters: ``scope`` ``pair`` (one client and one typed username: exponential back-off),
    ``client`` (one address, every username) and ``account`` (one username, every client), each with the window it
    counts in and the time until which it refuses logins. ``client`` / ``account`` are '' where the scope has none.
    """

    __tablename__ = "login_throttle"
    __table_args__ = (CheckConstraint(_one_of("scope", ("pair", "client", "account")), name="ck_login_throttle_scope"),)
    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    client: Mapped[str] = mapped_column(String(45), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column()
    blocked_until: Mapped[datetime | None] = mapped_column()
