"""reference history: references attached to stored cases after their batch

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-06

Upgrade creates ``reference_attachments`` (one row per ``attach-reference``: the image, the reference's kind
``final_clinical`` or ``research``, its source and format, its hash, who attached it and when, when a later one
superseded it, how many results were recomputed, and the numbers it replaced). Downgrade drops the table: the
results recomputed with the attached references stay, the history of the attachments is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reference_attachments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_format", sa.String(length=16), nullable=False),
        sa.Column("reference_hash", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("replaced", sa.JSON(), nullable=False),
        sa.CheckConstraint("kind IN ('final_clinical', 'research')", name="ck_reference_attachments_kind"),
    )
    op.create_index("ix_reference_attachments_image_id", "reference_attachments", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_reference_attachments_image_id", table_name="reference_attachments")
    op.drop_table("reference_attachments")
