"""The review tables: local users, review items (one per case × configuration × structure) and the audit log.

They share :class:`pipeline.store.schema.Base`, so Alembic (``migrations/versions/0002_review.py``) and
``alembic check`` see them. ``audit_log`` is append-only: the migration installs triggers that refuse UPDATE and
DELETE (and TRUNCATE on PostgreSQL) at the database level; users are deactivated, never deleted (the audit log
and review items reference them without cascades).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.store.schema import Base, utcnow

ROLES = ("viewer", "reviewer", "approver", "admin")
STATES = ("pending", "in_review", "reviewed", "approved")
DECISIONS = ("accepted", "edited", "rejected")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class User(Base):
    """A local account. ``password_hash`` is werkzeug's ``method$salt$hash`` string (scrypt), never the password.

    ``failed_logins`` counts consecutive failures; ``locked_until`` is set when they reach the throttling limit.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="ck_users_role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
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


class AuditEntry(Base):
    """One row of the append-only audit log: who did what to which object, when, from where, before → after.

    ``actor_id`` is NULL for the command line and for logins with an unknown username; ``actor`` always holds a
    name (the username, ``cli:<os user>``, or the name that was typed). ``outcome`` is ``ok``, ``denied`` (refused
    by the permission matrix, the workflow or a stale version) or ``failure`` / ``locked`` for logins.
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
