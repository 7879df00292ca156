"""Case claims, so that two batch runs at once never process the same case.

PostgreSQL: a session-level advisory lock per case on a connection held while the case is processed (the server
drops it when the process dies). SQLite: an exclusive, non-blocking ``flock`` on a file per case beside the database
file (the kernel drops it when the process dies). Either way a killed run leaves no stale claim behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text


def _key(case: str) -> int:
    """A signed 64-bit advisory-lock key for a case name."""
    return int.from_bytes(hashlib.sha256(case.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def claim(engine: Engine, case: str) -> Iterator[bool]:
    """Yield True while this process holds the case, False when another process does."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(case)}).scalar())
            connection.commit()
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(case)})
                    connection.commit()
        return
    database = engine.url.database
    folder = Path(database).parent / "locks" if database and database != ":memory:" else Path("var") / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{_key(case) & 0xFFFFFFFFFFFFFFFF:016x}.lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
