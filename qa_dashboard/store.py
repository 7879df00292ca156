"""The dashboard's read-only handle on the results store: the database, the artifact maps and their caches.

The store is the one the app's settings name (``database_url``, ``artifacts_dir``; :mod:`qa_dashboard.config`); it
is opened on first use and checked at each use until ready, so a store created or migrated while the app runs is
picked up on the next page load. A store is
handed out only once its schema is at Alembic's head; until then :func:`get_store` raises
:class:`~pipeline.store.database.StoreNotReadyError` with a message that names the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import StoreNotReadyError
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import check_at_head, make_engine, session_factory
from pipeline.store.schema import CaseResult, Protocol
from pipeline.store.strata import acquisition_stamp
from qa_dashboard.config import settings
from qa_dashboard.rendering.maps import LruCache, MapCache

T = TypeVar("T")
MIGRATE_HINT = "python -m pipeline migrate"
RENDER_CACHE_BYTES = 64 << 20  # rendered slice images (PNG data URIs), keyed by everything that shapes them


@dataclass
class Store:
    """An open store: sessions on its database, its artifact maps and the caches of what was read from them."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    maps: MapCache
    renders: LruCache = field(default_factory=lambda: LruCache(RENDER_CACHE_BYTES, len))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads; nothing the dashboard does is committed."""
        with self.sessions() as session:
            yield session

    def cached(self, session: Session, key: Hashable, compute: Callable[[], T], by_acquisition: bool = False) -> T:
        """``compute()`` cached under ``key`` until the batch writes or removes results, or reruns a protocol, and with
        ``by_acquisition`` (numbers grouped or filtered by acquisition) until a stored acquisition changes (the batch
        stores a changed one without redoing the case)."""
        stamp = tuple(session.execute(select(
            select(func.max(CaseResult.id)).scalar_subquery(),
            select(func.count()).select_from(CaseResult).scalar_subquery(),
            select(func.max(Protocol.id)).scalar_subquery())).one())
        groups = acquisition_stamp(session) if by_acquisition else None
        return self.maps.derived((key, stamp, groups), compute)


_stores: dict[tuple[str, Path], Store] = {}
_lock = threading.Lock()


def _check_sqlite_file(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist (connecting would create an empty database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if not Path(parsed.database).is_file():
        raise StoreNotReadyError(
            f"there is no store at {parsed.database} yet: run `{MIGRATE_HINT}` to create it (with the same "
            "QA_DATABASE_URL), then fill it with `make demo` or `python -m pipeline run`"
        )


def open_store(url: str, root: Path) -> Store:
    """The store at ``url`` with maps under ``root``, opened once per process and checked at Alembic head."""
    key = (url, root)
    with _lock:
        store = _stores.get(key)
        if store is not None:
            return store
        _check_sqlite_file(url)
        engine = make_engine(url)
        try:
            check_at_head(engine)
        except StoreNotReadyError:
            engine.dispose()
            raise
        store = Store(url, engine, session_factory(engine), MapCache(ArtifactStore(root)))
        _stores[key] = store
        return store


def get_store() -> Store:
    """The store of the app's settings; StoreNotReadyError (naming the fix) if not ready."""
    current = settings()
    return open_store(current.database_url, current.artifacts_dir)


def has_results(session: Session) -> bool:
    """Whether the batch has stored at least one case result."""
    return bool(session.scalar(select(exists().where(CaseResult.id.is_not(None)))))
