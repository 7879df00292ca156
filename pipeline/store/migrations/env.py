"""Alembic environment: the store's URL comes from the caller or, for the ``alembic`` command line, from the
process settings (``QA_DATABASE_URL``, :mod:`pipeline.settings`)."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, event, text

import pipeline.store  # noqa: F401  (registers every table, results and review, on Base.metadata)
from pipeline.settings import Settings
from pipeline.store.database import make_engine
from pipeline.store.schema import Base

config = context.config
if config.config_file_name is not None and not config.attributes.get("database_url"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _url() -> str:
    return str(config.attributes.get("database_url") or Settings.from_env().database_url)


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _foreign_keys_off(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


def _migration_engine() -> Engine:
    """The store's engine; on SQLite with foreign keys OFF (SQLite's own recipe for schema changes): a batch
    migration recreates a table by copying it and dropping the old one, and with foreign keys on that DROP would
    delete every row of the tables that reference it ``ON DELETE CASCADE``."""
    engine = make_engine(_url())
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _foreign_keys_off)  # after make_engine's own pragmas, which turn them on
    return engine


def _check_foreign_keys(connection: Connection) -> None:
    """Fail loudly when a SQLite migration left a row pointing nowhere (foreign keys were not enforced)."""
    broken = connection.execute(text("PRAGMA foreign_key_check")).all()
    if broken:
        raise RuntimeError(f"the migration left {len(broken)} rows with a dangling foreign key, e.g. {broken[0]}")


def run_migrations_online() -> None:
    """Migrate the live database in one transaction (SQLite and PostgreSQL both have transactional DDL)."""
    engine = _migration_engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
            if engine.dialect.name == "sqlite":
                _check_foreign_keys(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
