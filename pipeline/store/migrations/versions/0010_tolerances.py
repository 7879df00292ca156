"""trend levels: tolerance and action bounds per trend quantity, configuration and structure

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-06

Upgrade creates ``trend_levels`` (empty: no level set, so ``pipeline run`` exits as before). Downgrade drops it; the
levels' history stays in the audit log (``config.levels`` rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trend_levels",
        sa.Column("quantity", sa.String(length=64), nullable=False),
        sa.Column("configuration", sa.String(length=64), nullable=False),
        sa.Column("structure", sa.String(length=100), nullable=False),
        sa.Column("tolerance_low", sa.Float(), nullable=True),
        sa.Column("tolerance_high", sa.Float(), nullable=True),
        sa.Column("action_low", sa.Float(), nullable=True),
        sa.Column("action_high", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("quantity", "configuration", "structure"),
    )


def downgrade() -> None:
    op.drop_table("trend_levels")
