"""Case claims, so that two batch runs at once never process the same case.

PostgreSQL: a session-level advisory lock per case on a connection held while the case is processed (the server
drops it when the process dies). SQLite: an exclusive, non-blocking ``flock`` on a file per case beside the database
file (the kernel drops it when the process dies). Either way a killed run leaves no stale claim behind.

A claim may wait (``wait`` seconds, polling): a Dask worker retrying the case of a worker killed a moment ago can
ask before the server has noticed that the dead worker's connection is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Engine, text

POLL_SECONDS = 0.2


def _key(case: str) -> int:
    """A signed 64-bit advisory-lock key for a case name."""
    return int.from_bytes(hashlib.sha256(case.encode()).digest()[:8], "big", signed=True)


def _until(take: Callable[[], bool], wait: float) -> bool:
    """Try ``take`` until it succeeds or ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while not take():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


@contextlib.contextmanager
def claim(engine: Engine, case: str, wait: float = 0.0) -> Iterator[bool]:
    """Yield True while this process holds the case, False when another process does (after ``wait`` seconds)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            def take() -> bool:
                held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(case)}).scalar())
                connection.commit()
                return held

            held = _until(take, wait)
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
        def take() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        if not _until(take, wait):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
