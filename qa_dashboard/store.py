"""The dashboard's read-only handle on the results store: the database, the artifact maps and their caches.

The store is the one the app's settings name (``database_url``, ``artifacts_dir``; :mod:`qa_dashboard.config`); it
is opened on first use and checked at each use until ready, so a store created or migrated while the app runs is
picked up on the next page load. A store is
handed out only once its schema is at Alembic's head; until then :func:`get_store` raises
:class:`~pipeline.store.database.StoreNotReadyError` with a message that names the fix.

What is read is cached per process (maps, values derived from them or from queries, rendered pictures:
:class:`~qa_dashboard.rendering.maps.MapCache`), and every cache is of one :func:`store_version`: each gunicorn
worker or app process asks for the version when a page or the slice browser reads (:meth:`Store.refresh`) and drops
what it read before when the batch, the protocol stage or ``attach-reference`` has written since, so no process
serves what another's batch replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import StoreNotReadyError
from pipeline.store.artifacts import ArtifactStore
from pipeline.store.database import check_at_head, make_engine, session_factory
from pipeline.store.schema import (
    CaseResult,
    Image,
    Processing,
    Protocol,
    ReferenceAttachment,
    Run,
    TemperatureFit,
)
from qa_dashboard.config import settings
from qa_dashboard.rendering.maps import MapCache

T = TypeVar("T")
MIGRATE_HINT = "python -m pipeline migrate"


def store_version(session: Session) -> tuple[object, ...]:
    """A cheap token (one query of maxima and a count) that changes with every write of the batch (each case's
    transaction stamps its processing; a run's end, with its OOD scores, stamps the run), of the protocol stage (new
    protocol, temperature fits and TS results) and of ``attach-reference`` (a new attachment, the image updated).
    Timestamps rather than ids alone: SQLite reuses the highest id after a delete, as a redone case does."""
    newest = (func.max(Processing.completed_at), func.count(CaseResult.id), func.max(CaseResult.id),
              func.max(Run.id), func.max(Run.finished_at), func.max(Protocol.created_at),
              func.max(TemperatureFit.created_at), func.max(ReferenceAttachment.attached_at),
              func.max(Image.updated_at))
    tables = (Processing, CaseResult, CaseResult, Run, Run, Protocol, TemperatureFit, ReferenceAttachment, Image)
    return tuple(session.execute(select(*(select(value).select_from(table).scalar_subquery()
                                          for value, table in zip(newest, tables, strict=True)))).one())


@dataclass
class Store:
    """An open store: sessions on its database, its artifact maps and the caches of what was read from them."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    maps: MapCache

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads; nothing the dashboard does is committed."""
        with self.sessions() as session:
            yield session

    def refresh(self, session: Session) -> None:
        """Tie this process's caches to the store's current :func:`store_version` (emptied when it changed)."""
        self.maps.at_version(store_version(session))

    def cached(self, session: Session, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` cached under ``key`` until the store's version changes (:meth:`refresh`; a changed stored
        acquisition too, which stamps its image's ``updated_at``)."""
        self.refresh(session)
        return self.maps.derived(key, compute)


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
