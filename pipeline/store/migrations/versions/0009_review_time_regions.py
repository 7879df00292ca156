"""review time and stored review regions

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-06

Upgrade adds ``result_regions`` (the review regions the batch found at its budget, one row per result) and
``review_time`` (active seconds per user per review item, and per region opened). Existing results get no stored
regions: the worklist computes theirs from the maps, as before (the migration cannot read the artifact store);
the next batch run stores them. Downgrade drops both tables: the stored regions can be recomputed from the maps;
the measured review times are lost (the older code has no place for them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "result_regions",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("connectivity", sa.Integer(), nullable=False),
        sa.Column("structure_search_mm", sa.Float(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("result_id"),
    )
    op.create_table(
        "review_time",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("region_rank", sa.Integer(), nullable=True),
        sa.Column("budget", sa.Float(), nullable=True),
        sa.Column("flagged_ml", sa.Float(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["configuration_id"], ["configurations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review_time") as batch:
        batch.create_index("ix_review_time_configuration_id", ["configuration_id"], unique=False)
        batch.create_index("ix_review_time_image_id", ["image_id"], unique=False)
        batch.create_index("ix_review_time_user_open", ["user_id", "closed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("review_time") as batch:
        batch.drop_index("ix_review_time_user_open")
        batch.drop_index("ix_review_time_image_id")
        batch.drop_index("ix_review_time_configuration_id")
    op.drop_table("review_time")
    op.drop_table("result_regions")
