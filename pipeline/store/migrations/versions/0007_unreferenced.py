"""unreferenced cases: empty-prediction flags and the per-scan out-of-distribution score

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Upgrade adds ``case_results.empty_prediction`` and ``structure_results.empty_prediction`` (NOT NULL, false for
every stored row: a configuration that predicted nothing failed its case before this revision, so none is stored),
and the nullable ``case_results.ood_entropy``, ``ood_percentile``, ``ood_reference_n`` and ``ood_flag`` (NULL for
stored rows until the batch redoes them). Downgrade drops the columns; every other row is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OOD_COLUMNS = (("ood_entropy", sa.Float()), ("ood_percentile", sa.Float()), ("ood_reference_n", sa.Integer()),
               ("ood_flag", sa.Boolean()))


def upgrade() -> None:
    with op.batch_alter_table("case_results") as batch:
        batch.add_column(sa.Column("empty_prediction", sa.Boolean(), nullable=False, server_default=sa.false()))
        for name, kind in OOD_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("structure_results") as batch:
        batch.add_column(sa.Column("empty_prediction", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("structure_results") as batch:
        batch.drop_column("empty_prediction")
    with op.batch_alter_table("case_results") as batch:
        for name, _ in reversed(OOD_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("empty_prediction")
