"""the worker that processed or failed each case

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

Upgrade adds ``processings.worker`` and ``case_failures.worker`` (text, NULL): the Dask worker that processed or
failed the case when the batch ran on a cluster (``run --cluster``), NULL for a case processed in the batch's own
process — so every row stored before this revision reads as in-process, which it was. Downgrade drops both
columns and keeps every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("processings", "case_failures")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("worker", sa.String(200), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("worker")
