"""cost per result; sweep configurations

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

Upgrade adds to ``case_results`` what the configuration cost on the case as if run alone: ``forward_passes``,
``seconds_inference`` (preprocessing + its passes' measured seconds + its own pooling and mapping) and ``device``
(``cpu`` or ``cuda: <GPU>``), all NULL for results stored before (their cost was not measured per configuration;
the processing's totals remain), and to ``configurations`` the ``sweep`` flag (false for every stored one: the sweep's
sub-configurations did not exist). Downgrade deletes the sweep configurations (their results cascade) and drops the
four columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("case_results") as batch:
        batch.add_column(sa.Column("forward_passes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("seconds_inference", sa.Float(), nullable=True))
        batch.add_column(sa.Column("device", sa.String(100), nullable=True))
    with op.batch_alter_table("configurations") as batch:
        batch.add_column(sa.Column("sweep", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.execute("DELETE FROM configurations WHERE sweep")
    with op.batch_alter_table("configurations") as batch:
        batch.drop_column("sweep")
    with op.batch_alter_table("case_results") as batch:
        batch.drop_column("device")
        batch.drop_column("seconds_inference")
        batch.drop_column("forward_passes")
