"""review study: a study's protocol, cases, reviewers and allocation, immutable once defined

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

Upgrade creates ``studies``, ``study_cases``, ``study_reviewers`` and ``study_assignments``
(:mod:`pipeline.store.study_schema`), and triggers that keep a defined study as it was defined: every DELETE on the
four tables is refused, and every UPDATE except closing an open study (``closed_at``, ``closed_by``) and the first
opening of an assignment (``opened_at``). Downgrade drops the triggers and the tables (the studies' history stays in
the audit log, ``study.*`` rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IMMUTABLE = "a defined study is immutable"
TABLES = ("studies", "study_cases", "study_reviewers", "study_assignments")
# table -> (the columns an UPDATE may set, once: while the first of them is NULL)
MUTABLE = {"studies": ("closed_at", "closed_by"), "study_assignments": ("opened_at",)}
STUDY_COLUMNS = ("id", "name", "configuration_id", "budget_kind", "budget_value", "case_source", "design",
                 "washout_days", "endpoint", "seed", "allocation_method", "allocation_digest", "created_by_id",
                 "created_by", "created_at")
ASSIGNMENT_COLUMNS = ("id", "study_id", "image_id", "user_id", "arm", "period", "position")

# PL/pgSQL does not short-circuit AND, and OLD.<column> fails on a table without that column: the row is read as jsonb
POSTGRES_FUNCTION = f"""CREATE FUNCTION study_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF TG_TABLE_NAME = 'studies' AND to_jsonb(OLD) ->> 'closed_at' IS NULL
           AND to_jsonb(NEW) - 'closed_at' - 'closed_by' = to_jsonb(OLD) - 'closed_at' - 'closed_by' THEN
            RETURN NEW;
        END IF;
        IF TG_TABLE_NAME = 'study_assignments' AND to_jsonb(OLD) ->> 'opened_at' IS NULL
           AND to_jsonb(NEW) - 'opened_at' = to_jsonb(OLD) - 'opened_at' THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION '{IMMUTABLE}: % of % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$"""


def _sqlite_update_guard(table: str) -> str:
    frozen = {"studies": STUDY_COLUMNS, "study_assignments": ASSIGNMENT_COLUMNS}[table]
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in frozen)
    return (f"CREATE TRIGGER {table}_immutable_update BEFORE UPDATE ON {table} "
            f"WHEN OLD.{MUTABLE[table][0]} IS NOT NULL OR {changed} "
            f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}: UPDATE of {table} refused'); END")


def _sqlite_statements() -> list[str]:
    statements = []
    for table in TABLES:
        statements.append(f"CREATE TRIGGER {table}_immutable_delete BEFORE DELETE ON {table} "
                          f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}: DELETE of {table} refused'); END")
        if table in MUTABLE:
            statements.append(_sqlite_update_guard(table))
        else:
            statements.append(f"CREATE TRIGGER {table}_immutable_update BEFORE UPDATE ON {table} "
                              f"BEGIN SELECT RAISE(ABORT, '{IMMUTABLE}: UPDATE of {table} refused'); END")
    return statements


def _postgres_statements() -> list[str]:
    statements = [POSTGRES_FUNCTION]
    for table in TABLES:
        statements += [f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION study_immutable()",
                       f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION study_immutable()"]
    return statements


def _triggers() -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        return _postgres_statements()
    if dialect == "sqlite":
        return _sqlite_statements()
    raise NotImplementedError(f"no study triggers for the {dialect} dialect")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("budget_kind", sa.String(length=8), nullable=False),
        sa.Column("budget_value", sa.Float(), nullable=False),
        sa.Column("case_source", sa.JSON(), nullable=False),
        sa.Column("design", sa.String(length=16), nullable=False),
        sa.Column("washout_days", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.String(length=32), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("allocation_method", sa.String(length=32), nullable=False),
        sa.Column("allocation_digest", sa.String(length=64), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint("(design = 'crossover') = (washout_days IS NOT NULL) AND "
                           "(washout_days IS NULL OR washout_days >= 0)", name="ck_studies_washout"),
        sa.CheckConstraint("budget_kind IN ('fraction', 'minutes')", name="ck_studies_budget_kind"),
        sa.CheckConstraint("design IN ('per-case', 'crossover')", name="ck_studies_design"),
        sa.CheckConstraint("endpoint IN ('edited-ml-per-minute', 'minutes-per-case', 'edit-detected-fraction')",
                           name="ck_studies_endpoint"),
        sa.ForeignKeyConstraint(["configuration_id"], ["configurations.id"]),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_studies_configuration_id", "studies", ["configuration_id"])
    op.create_table(
        "study_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=1), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("arm IN ('A', 'B')", name="ck_study_assignments_arm"),
        sa.CheckConstraint("period IN (1, 2)", name="ck_study_assignments_period"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "image_id", "user_id"),
    )
    op.create_index("ix_study_assignments_study_id", "study_assignments", ["study_id"])
    op.create_index("ix_study_assignments_user_id", "study_assignments", ["user_id"])
    op.create_table(
        "study_cases",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.PrimaryKeyConstraint("study_id", "image_id"),
    )
    op.create_index("ix_study_cases_image_id", "study_cases", ["image_id"])
    op.create_table(
        "study_reviewers",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("study_id", "user_id"),
    )
    op.create_index("ix_study_reviewers_user_id", "study_reviewers", ["user_id"])
    for statement in _triggers():
        op.execute(statement)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS study_immutable()")
