"""The audit log's hash chain: each row carries the hash of the row before it (``prev_hash``) and the hash of its own
content and that link (``row_hash``), so an edit, a deletion, an insertion or a reordering of rows breaks the chain
at the first row it touches; :func:`verify` finds that row.

The row hash (format v1) is the SHA-256 (hex) of the UTF-8 text ``qa-audit-v1`` followed, for each field of
:data:`FIELDS` in order, by ``|`` and either ``~`` (NULL) or ``<length in characters>:<text>``. Fields are text as
stored: ``at`` as UTC ``YYYY-MM-DDTHH:MM:SS.ffffff``, ``before`` / ``after`` as their stored JSON text. The first row
links to :data:`GENESIS`.

Who writes the hashes, the time and the actor's name (never the caller):
- PostgreSQL: the ``BEFORE INSERT`` trigger of migration 0005 (``audit_log_seal``, SECURITY DEFINER): it takes the
  next id under an advisory lock, sets ``at`` to the server's clock, ``actor`` to the name of ``actor_id`` (a row
  without ``actor_id`` may not name a user), ``db_user`` to the database role, and the hashes;
- SQLite: :func:`seal_new_entries` on every ORM flush, under SQLite's write lock (id = last + 1, ``at`` = now); a
  trigger refuses any INSERT that does not extend the chain (``REPLACE INTO`` / ``INSERT OR REPLACE`` included).
Every flush also bounds the text of new rows (:func:`bounded`), so no caller can store a megabyte in the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Text, cast, event, select, text
from sqlalchemy.orm import Session

from pipeline.store.review_schema import AuditEntry, User
from pipeline.store.schema import Run, utcnow

VERSION = "qa-audit-v1"
GENESIS = "0" * 64
FIELDS = ("id", "at", "actor_id", "actor", "action", "outcome", "object_type", "object_id", "before", "after", "ip",
          "db_user", "prev_hash")
MAX_JSON_TEXT = 2000  # characters of one string inside ``before`` / ``after`` (a review comment's limit)
TEXT_LIMITS = {"actor": 100, "action": 32, "outcome": 16, "object_type": 32, "object_id": 200, "ip": 45}


def utc_text(moment: datetime) -> str:
    """``moment`` as the chain hashes it: UTC (a naive time is UTC, as SQLite returns them), microseconds."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%f")


def row_hash(values: Sequence[str | None]) -> str:
    """The v1 hash of one row's :data:`FIELDS` as text (None for NULL)."""
    parts = [VERSION, *("~" if v is None else f"{len(v)}:{v}" for v in values)]
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


def bounded(value: Any, limit: int = MAX_JSON_TEXT) -> Any:
    """A JSON value with every string cut to ``limit`` characters (an ellipsis marks a cut)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit - 1] + "…"
    if isinstance(value, dict):
        return {bounded(str(k), 100): bounded(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(v, limit) for v in value]
    return value


def _bound(entry: AuditEntry) -> None:
    for name, limit in TEXT_LIMITS.items():
        current = getattr(entry, name)
        if isinstance(current, str) and len(current) > limit:
            setattr(entry, name, current[:limit])
    for name in ("before", "after"):
        setattr(entry, name, bounded(getattr(entry, name)))  # also marks None as set: stored as JSON null


def _tail(connection: Connection) -> tuple[int, str]:
    """The last row's id and hash (0 and GENESIS for an empty log)."""
    last = connection.execute(select(AuditEntry.id, AuditEntry.row_hash).order_by(AuditEntry.id.desc())
                              .limit(1)).first()
    return (0, GENESIS) if last is None else (int(last[0]), str(last[1]))


def _seal_sqlite(session: Session, entries: list[AuditEntry]) -> None:
    connection = session.connection()
    # a write that changes nothing takes SQLite's write lock now, so no other writer can extend the chain between
    # reading its tail and inserting after it
    connection.execute(text("UPDATE audit_log SET id = id WHERE 0"))
    last_id, last_hash = _tail(connection)
    dialect = connection.dialect
    json_text = AuditEntry.__table__.c.before.type.bind_processor(dialect)
    for entry in entries:
        _name_actor(connection, entry)
        last_id += 1
        entry.id, entry.at, entry.db_user, entry.prev_hash = last_id, utcnow(), None, last_hash
        stored = {"before": json_text(entry.before), "after": json_text(entry.after)}
        entry.row_hash = last_hash = row_hash([_field(entry, name, stored) for name in FIELDS])


def _name_actor(connection: Connection, entry: AuditEntry) -> None:
    """The actor's name is its user's when the row has an ``actor_id``; a row without one may not name a user."""
    if entry.actor_id is not None:
        named = connection.scalar(select(User.username).where(User.id == entry.actor_id))
        if named is None:
            raise ValueError(f"audit_log: there is no user #{entry.actor_id}")
        entry.actor = named
    elif connection.scalar(select(User.id).where(User.username == entry.actor)) is not None:
        raise ValueError(f"audit_log: {entry.actor} is a user, so the row needs its actor_id")


def _field(entry: AuditEntry, name: str, stored: dict[str, str | None]) -> str | None:
    if name in stored:
        return stored[name]
    value = getattr(entry, name)
    if value is None:
        return None
    return utc_text(value) if isinstance(value, datetime) else str(value)


@event.listens_for(Session, "before_flush")
def seal_new_entries(session: Session, _context: Any, _instances: Any) -> None:
    """Bound every new audit row; on SQLite also give it its id, time and hashes (see the module's description)."""
    entries = [obj for obj in session.new if isinstance(obj, AuditEntry)]
    if not entries:
        return
    for entry in entries:
        _bound(entry)
    if session.get_bind().dialect.name == "sqlite":
        _seal_sqlite(session, entries)


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify` found: rows checked, the chain's head, and the first bad row with the reason."""

    rows: int
    head_id: int | None
    head_hash: str | None
    bad_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        """One line for people and logs."""
        if self.ok:
            head = f", head #{self.head_id} {self.head_hash[:12]}" if self.head_hash else ""
            return f"audit log intact: {self.rows} rows{head}"
        return f"audit log TAMPERED at row #{self.bad_id}: {self.problem}"

    def record(self) -> dict[str, Any]:
        """What a run stores (``runs.audit_check``): the result and the head, an anchor for later checks."""
        return {"ok": self.ok, "rows": self.rows, "head_id": self.head_id, "head_hash": self.head_hash,
                "bad_id": self.bad_id, "problem": self.problem, "checked_at": utc_text(utcnow())}


def _rows(connection: Connection) -> Iterable[Any]:
    query = select(AuditEntry.id, AuditEntry.at, AuditEntry.actor_id, AuditEntry.actor, AuditEntry.action,
                   AuditEntry.outcome, AuditEntry.object_type, AuditEntry.object_id, cast(AuditEntry.before, Text),
                   cast(AuditEntry.after, Text), AuditEntry.ip, AuditEntry.db_user, AuditEntry.prev_hash,
                   AuditEntry.row_hash).order_by(AuditEntry.id)
    return connection.execution_options(yield_per=2000).execute(query)


def _anchors(connection: Connection) -> dict[int, list[tuple[int, str]]]:
    """Row id → (run id, hash) that earlier verifications stored on runs."""
    anchors: dict[int, list[tuple[int, str]]] = {}
    for run_id, check in connection.execute(select(Run.id, Run.audit_check).where(Run.audit_check.is_not(None))):
        if isinstance(check, dict) and check.get("ok") and check.get("head_id") and check.get("head_hash"):
            anchors.setdefault(int(check["head_id"]), []).append((run_id, str(check["head_hash"])))
    return anchors


def verify(connection: Connection) -> ChainReport:
    """Walk the whole log in id order; the first row whose hash, link or anchor (a head a run recorded) is wrong."""
    anchors = _anchors(connection)
    count, previous_id, previous_hash = 0, None, GENESIS
    for row in _rows(connection):
        count += 1
        row_id, stored_prev, stored_hash = int(row[0]), row[12], row[13]
        values = [None if v is None else utc_text(v) if isinstance(v, datetime) else str(v) for v in row[:13]]
        if stored_prev != previous_hash:
            after = f"row #{previous_id}" if previous_id is not None else "the start of the log"
            return ChainReport(count, previous_id, previous_hash, row_id,
                               f"it does not follow {after}: a row was removed, inserted or reordered there")
        if stored_hash != row_hash(values):
            return ChainReport(count, previous_id, previous_hash, row_id,
                               "its content does not match its hash: it was edited after it was written")
        for run_id, recorded in anchors.pop(row_id, []):
            if recorded != stored_hash:
                return ChainReport(count, previous_id, previous_hash, row_id,
                                   f"run {run_id} recorded another hash for it: the log was rewritten from there")
        previous_id, previous_hash = row_id, stored_hash
    if anchors:
        missing = min(anchors)
        run_id = anchors[missing][0][0]
        return ChainReport(count, previous_id, previous_hash, missing,
                           f"run {run_id} recorded it as the head, but it is gone: rows were removed")
    return ChainReport(count, previous_id, None if previous_id is None else previous_hash)


def verify_engine(engine: Engine) -> ChainReport:
    """:func:`verify` in a read transaction of its own."""
    with engine.connect() as connection:
        return verify(connection)
