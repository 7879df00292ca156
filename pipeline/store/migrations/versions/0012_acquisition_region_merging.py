"""acquisition per image; merge settings of stored review regions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Upgrade adds ``images.acquisition`` (JSON, NULL: how the scan was made, where known — DICOM tags such as the
manufacturer, model, kernel, slice thickness, kVp and contrast) and, to ``result_regions``, the two region settings
the regions were found with beyond connectivity and search radius: ``merge_distance_mm`` and ``min_region_ml``. Rows
already stored were found without merging or a minimum size: they get 0 and 0, so a worklist with other settings
computes its regions from the maps until the batch redoes the case (it skips unchanged cases). Downgrade drops the
three columns (the regions found with merging go with it, as the older code would read them as unmerged).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("acquisition", sa.JSON(), nullable=True))
    with op.batch_alter_table("result_regions") as batch:
        batch.add_column(sa.Column("merge_distance_mm", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("min_region_ml", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.execute("DELETE FROM result_regions WHERE merge_distance_mm <> 0 OR min_region_ml <> 0")
    with op.batch_alter_table("result_regions") as batch:
        batch.drop_column("min_region_ml")
        batch.drop_column("merge_distance_mm")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("acquisition")
