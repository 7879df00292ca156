"""stored review regions at several budgets

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Upgrade makes ``result_regions``' key (result, budget): the batch stores a result's regions at each of the review
settings' ``region_budgets`` (0.1 to 5 % by default), so the worklist opens at any of them from the store.
The rows already stored (one per result, at its run's budget) are kept. Downgrade keeps one row per result, the one at
the budget of the result's stored top-budget mask (else its smallest), and the key (result) again; the other budgets'
regions are recomputed from the maps by the older code.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "result_id, budget, connectivity, structure_search_mm, regions"


def _rebuild(key: list[str], keep: str) -> None:
    """``result_regions`` again with primary key ``key``, holding the rows ``keep`` (a WHERE clause) selects."""
    op.create_table(
        "result_regions_next",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("budget", sa.Float(), nullable=False),
        sa.Column("connectivity", sa.Integer(), nullable=False),
        sa.Column("structure_search_mm", sa.Float(), nullable=False),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["result_id"], ["case_results.id"], ondelete="CASCADE",
                                name="result_regions_next_result_id_fkey"),
        sa.PrimaryKeyConstraint(*key, name="result_regions_next_pkey"),
    )
    op.execute(f"INSERT INTO result_regions_next ({COLUMNS}) SELECT {COLUMNS} FROM result_regions AS r WHERE {keep}")
    op.drop_table("result_regions")
    op.rename_table("result_regions_next", "result_regions")
    if op.get_bind().dialect.name == "postgresql":  # the names a fresh create_table of result_regions gives them
        op.execute("ALTER TABLE result_regions RENAME CONSTRAINT result_regions_next_pkey TO result_regions_pkey")
        op.execute("ALTER TABLE result_regions RENAME CONSTRAINT result_regions_next_result_id_fkey "
                   "TO result_regions_result_id_fkey")


def upgrade() -> None:
    _rebuild(["result_id", "budget"], "1 = 1")


def downgrade() -> None:
    stored_budget = ("(SELECT MIN(a.budget) FROM artifacts AS a WHERE a.result_id = r.result_id "
                     "AND a.kind = 'budget_mask')")
    smallest = "(SELECT MIN(o.budget) FROM result_regions AS o WHERE o.result_id = r.result_id)"
    _rebuild(["result_id"], f"r.budget = COALESCE((SELECT MIN(o.budget) FROM result_regions AS o "
                            f"WHERE o.result_id = r.result_id AND o.budget = {stored_budget}), {smallest})")
