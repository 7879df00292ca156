"""temperature fit roles: repeat, deployed, crossfit

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

Upgrade adds ``temperature_fits.role`` (NOT NULL, checked): fits of a protocol become ``repeat``, the others
``deployed`` — what they were. Cross-fitted deployed temperatures (``crossfit``) are new with this revision.
Downgrade deletes the cross-fits (their results cascade: a protocol run recomputes them) and drops the column, so that
the older code, which took every fit without a protocol as deployed, finds only the deployed ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

fits = sa.table("temperature_fits", sa.column("protocol_id", sa.Integer()), sa.column("role", sa.String()))


def upgrade() -> None:
    with op.batch_alter_table("temperature_fits") as batch:
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
    op.execute(fits.update().values(role=sa.case((fits.c.protocol_id.is_(None), "deployed"), else_="repeat")))
    with op.batch_alter_table("temperature_fits") as batch:
        batch.alter_column("role", existing_type=sa.String(length=16), nullable=False)
        batch.create_check_constraint("ck_temperature_fits_role", "role IN ('repeat', 'deployed', 'crossfit')")


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM case_results WHERE temperature_fit_id IN "
                       "(SELECT id FROM temperature_fits WHERE role = 'crossfit')"))
    op.execute(fits.delete().where(fits.c.role == "crossfit"))
    with op.batch_alter_table("temperature_fits") as batch:
        batch.drop_constraint("ck_temperature_fits_role", type_="check")
        batch.drop_column("role")
