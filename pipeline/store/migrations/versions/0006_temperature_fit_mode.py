"""temperature fit mode: whether a fitted temperature scales the pooled map or each member

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Upgrade adds ``temperature_fits.temperature_mode`` (NOT NULL, checked): ``after_pooling`` (every fit before this
revision) or ``per_member``. A fit is applied only under the mode it was fitted with. Downgrade deletes the
``per_member`` fits (their results cascade), which the older code would apply after pooling, and drops the column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("temperature_fits") as batch:
        batch.add_column(sa.Column("temperature_mode", sa.String(length=16), nullable=False,
                                   server_default="after_pooling"))
        batch.create_check_constraint("ck_temperature_fits_mode",
                                      "temperature_mode IN ('after_pooling', 'per_member')")


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM case_results WHERE temperature_fit_id IN "
                       "(SELECT id FROM temperature_fits WHERE temperature_mode = 'per_member')"))
    op.execute(sa.text("DELETE FROM temperature_fits WHERE temperature_mode = 'per_member'"))
    with op.batch_alter_table("temperature_fits") as batch:
        batch.drop_constraint("ck_temperature_fits_mode", type_="check")
        batch.drop_column("temperature_mode")
