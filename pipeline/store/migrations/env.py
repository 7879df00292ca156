"""Alembic environment: the store's URL comes from the caller or, for the ``alembic`` command line, from the
process settings (``QA_DATABASE_URL``, :mod:`pipeline.settings`)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

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


def run_migrations_online() -> None:
    """Migrate the live database in one transaction (SQLite and PostgreSQL both have transactional DDL)."""
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
