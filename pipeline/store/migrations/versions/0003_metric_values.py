"""metric values: one row per (result, class, metric) instead of a case_results column per metric

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Upgrade creates ``metric_values``, copies the value of every metric column of every ``case_results`` row into it
(``class_index`` -1: the whole case; NULL stays NULL) and drops those columns. Downgrade adds the columns back, fills
them from the rows and drops the table. The metric names are frozen here, as they were columns at revision 0002:
metrics registered later never were columns. On SQLite the column changes recreate ``case_results``; ``env.py``
turns foreign keys off while migrating, or dropping the old table would cascade to its children.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHOLE_CASE = -1
COLUMNS = ("dsc_mean_fg", "ece", "brier", "nll", "ueo_auc", "fp_tp_auc", "fn_tn_auc", "mean_entropy_roi")
NOT_NULL = ("mean_entropy_roi",)  # 0002 declared it NOT NULL: it needs no reference

case_results = sa.table("case_results", sa.column("id", sa.Integer()),
                        *(sa.column(name, sa.Float()) for name in COLUMNS))
metric_values = sa.table("metric_values", sa.column("result_id", sa.Integer()), sa.column("class_index", sa.Integer()),
                         sa.column("name", sa.String()), sa.column("value", sa.Float()))


def upgrade() -> None:
    op.create_table(
        "metric_values",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("result_id", "class_index", "name"),
        sqlite_with_rowid=False,
    )
    for name in COLUMNS:
        op.execute(metric_values.insert().from_select(
            ["result_id", "class_index", "name", "value"],
            sa.select(case_results.c.id, sa.literal(WHOLE_CASE), sa.literal(name), case_results.c[name])))
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))
    for name in COLUMNS:
        stored = (sa.select(metric_values.c.value)
                  .where(metric_values.c.result_id == case_results.c.id, metric_values.c.class_index == WHOLE_CASE,
                         metric_values.c.name == name)
                  .scalar_subquery())
        op.execute(case_results.update().values({name: stored}))
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        for name in NOT_NULL:
            batch_op.alter_column(name, existing_type=sa.Float(), nullable=False)
    op.drop_table("metric_values")
