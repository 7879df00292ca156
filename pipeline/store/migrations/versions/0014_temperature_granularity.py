"""temperature granularity: class-wise and per-scanner temperatures beside one T per configuration

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

Upgrade adds ``configurations.temperature_granularity`` and ``temperature_fits.granularity`` (NOT NULL, checked:
``configuration``, ``class`` or ``scanner``; every row before this revision is ``configuration``) and
``temperature_fits.temperatures`` (JSON, NULL: the class-wise vector, or the per-scanner temperatures). Downgrade
deletes the ``class`` and ``scanner`` configurations with their fits and results (and every row hanging off those
results: the older code would apply their scalar T to the whole map) and drops the columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHOICES = "('configuration', 'class', 'scanner')"


def upgrade() -> None:
    with op.batch_alter_table("configurations") as batch:
        batch.add_column(sa.Column("temperature_granularity", sa.String(length=16), nullable=False,
                                   server_default="configuration"))
        batch.create_check_constraint("ck_configurations_temperature_granularity",
                                      f"temperature_granularity IN {_CHOICES}")
    with op.batch_alter_table("temperature_fits") as batch:
        batch.add_column(sa.Column("granularity", sa.String(length=16), nullable=False,
                                   server_default="configuration"))
        batch.add_column(sa.Column("temperatures", sa.JSON(), nullable=True))
        batch.create_check_constraint("ck_temperature_fits_granularity", f"granularity IN {_CHOICES}")


def _delete(table: str, condition: str, inspector: sa.Inspector) -> None:
    """Delete ``table``'s rows matching ``condition`` and, first, every row referencing them (SQLite migrations run
    with foreign keys off, so ON DELETE CASCADE does not)."""
    for child in inspector.get_table_names():
        for key in inspector.get_foreign_keys(child):
            if key["referred_table"] == table:
                column, referred = key["constrained_columns"][0], key["referred_columns"][0]
                _delete(child, f"{column} IN (SELECT {referred} FROM {table} WHERE {condition})", inspector)
    op.execute(sa.text(f"DELETE FROM {table} WHERE {condition}"))


def downgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    _delete("configurations", "temperature_granularity <> 'configuration'", inspector)
    with op.batch_alter_table("temperature_fits") as batch:
        batch.drop_constraint("ck_temperature_fits_granularity", type_="check")
        batch.drop_column("temperatures")
        batch.drop_column("granularity")
    with op.batch_alter_table("configurations") as batch:
        batch.drop_constraint("ck_configurations_temperature_granularity", type_="check")
        batch.drop_column("temperature_granularity")
