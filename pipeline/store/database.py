"""Engines and sessions of the store, and the check that its schema is at Alembic's head."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from pipeline.errors import StoreNotReadyError

#: the Alembic scripts ship inside the package, so ``qa-pipeline migrate`` works from any folder after ``pip install``
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_HINT = "alembic upgrade head"

log = logging.getLogger(__name__)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys on, a busy timeout and its parent folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreNotReadyError(f"cannot create the folder of the store {url}: {error.strerror or error} "
                                         f"({error.filename})") from None
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    """Alembic's configuration built in code (no ``alembic.ini``): the package's migrations, aimed at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def head_revision() -> str:
    """The newest migration of ``pipeline/store/migrations/``."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise StoreNotReadyError(f"{MIGRATIONS} holds no revision")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_at_head(engine: Engine) -> None:
    """Raise :class:`StoreNotReadyError` unless the database's schema is the code's (Alembic head)."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
    except Exception as error:
        raise StoreNotReadyError(f"cannot open the store {url}: {error}".splitlines()[0]) from error
    head = head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise StoreNotReadyError(
            f"the store {url} is {state}, the code needs {head}: run `{UPGRADE_HINT}` in the checkout "
            "(or `qa-pipeline migrate` / `python -m pipeline migrate`) with the same QA_DATABASE_URL"
        )


def refresh_statistics(engine: Engine) -> None:
    """``ANALYZE`` on PostgreSQL after bulk writes: without planner statistics a freshly loaded store made the
    dashboard's cohort query take 33 s instead of 0.3 s (measured). Nothing to do on SQLite."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # only the tables this role may analyze (its own, or MAINTAIN from PostgreSQL 17): a plain ANALYZE would
        # skip the others with a server-log warning each (a least-privilege batch role, docs/postgres-roles.md)
        tables = list(connection.scalars(text(
            "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables "
            "WHERE schemaname = current_schema() AND (pg_has_role(current_user, tableowner, 'USAGE') OR CASE "
            "WHEN current_setting('server_version_num')::int >= 170000 THEN has_table_privilege("
            "format('%I.%I', schemaname, tablename), 'MAINTAIN') ELSE false END) ORDER BY tablename")))
        if tables:
            connection.execute(text("ANALYZE " + ", ".join(tables)))
        else:
            log.info("ANALYZE skipped: this role may analyze no table of the store (autovacuum will)")


def session_factory(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
