"""sessions and audit chain: server-side dashboard sessions, login throttles, a hash-chained audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

- ``user_sessions`` (revocable dashboard sessions) and ``login_throttle`` (failed-login counters per pair, client and
  account) replace ``users.failed_logins`` / ``users.locked_until``;
- ``runs.audit_check``: the audit log's verification at the end of a batch run;
- ``audit_log`` gets ``db_user``, ``prev_hash`` and ``row_hash`` (:mod:`pipeline.store.audit_chain`); the rows it holds
  are chained here, in id order. On PostgreSQL the trigger ``audit_log_seal`` (SECURITY DEFINER) then sets the id,
  the time, the actor's name, the database role and the hashes of every new row, whatever the INSERT gave; the id
  column loses its default (the trigger takes the sequence's next value under an advisory lock, so ids follow the
  chain). On SQLite a trigger refuses an INSERT that does not extend the chain: ``REPLACE INTO`` or ``INSERT OR
  REPLACE`` of an existing id, an id at or below the last, or a wrong ``prev_hash``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from pipeline.store.audit_chain import GENESIS, row_hash, utc_text

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "audit_log is append-only"
LOCK_KEY = 7_264_512_301  # pg_advisory_xact_lock key of the chain's tail (any constant, unique to this app)
SQLITE_APPEND_ONLY = tuple(
    f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: {verb} refused'); END"
    for verb in ("UPDATE", "DELETE")
)
SQLITE_CHAIN = (
    "CREATE TRIGGER audit_log_chain_only BEFORE INSERT ON audit_log "
    "WHEN NEW.id IS NULL OR NEW.id <= coalesce((SELECT max(id) FROM audit_log), 0) "
    f"OR NEW.prev_hash IS NOT coalesce((SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1), '{GENESIS}') "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: an INSERT must extend the hash chain (REPLACE refused)'); END"
)
# the v1 row hash of pipeline/store/audit_chain.py, in PL/pgSQL: '|' and '~' (NULL) or '<length>:<text>' per field
PG_FIELDS = ("NEW.id::text", "to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
             "NEW.actor_id::text", "NEW.actor", "NEW.action", "NEW.outcome", "NEW.object_type", "NEW.object_id",
             "NEW.before::text", "NEW.after::text", "NEW.ip", "NEW.db_user", "NEW.prev_hash")
PG_FIELD = ("CREATE FUNCTION audit_log_field(value text) RETURNS text LANGUAGE sql IMMUTABLE AS "
            "$$ SELECT '|' || coalesce(length(value)::text || ':' || value, '~') $$")


def _pg_seal(schema: str, sequence: str) -> str:
    digest = " || ".join(f"{schema}.audit_log_field({field})" for field in PG_FIELDS)
    return f"""CREATE FUNCTION audit_log_seal() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, {schema}, pg_temp AS $$
    DECLARE
        tail text;
        named text;
    BEGIN
        PERFORM pg_advisory_xact_lock({LOCK_KEY});
        NEW.id := nextval('{sequence}'::regclass);
        NEW.at := clock_timestamp();
        NEW.db_user := session_user;
        IF NEW.actor_id IS NOT NULL THEN
            SELECT username INTO named FROM {schema}.users WHERE id = NEW.actor_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'audit_log: there is no user #%', NEW.actor_id USING ERRCODE = 'foreign_key_violation';
            END IF;
            NEW.actor := named;
        ELSIF EXISTS (SELECT FROM {schema}.users WHERE username = NEW.actor) THEN
            RAISE EXCEPTION 'audit_log: % is a user, so the row needs its actor_id', NEW.actor
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        SELECT row_hash INTO tail FROM {schema}.audit_log ORDER BY id DESC LIMIT 1;
        NEW.prev_hash := coalesce(tail, '{GENESIS}');
        NEW.row_hash := encode(sha256(convert_to('qa-audit-v1' || {digest}, 'UTF8')), 'hex');
        RETURN NEW;
    END $$"""


audit = sa.table("audit_log", *(sa.column(n, sa.Integer()) for n in ("id", "actor_id")),
                 sa.column("at", sa.DateTime(timezone=True)), sa.column("before", sa.JSON()),
                 sa.column("after", sa.JSON()), sa.column("prev_hash", sa.String()), sa.column("row_hash", sa.String()),
                 *(sa.column(n, sa.String()) for n in ("actor", "action", "outcome", "object_type", "object_id", "ip",
                                                       "db_user")))


def _chain_existing_rows() -> None:
    """Hash every stored row in id order (the format of pipeline/store/audit_chain.py)."""
    bind = op.get_bind()
    fields = [audit.c.id, audit.c.at, audit.c.actor_id, audit.c.actor, audit.c.action, audit.c.outcome,
              audit.c.object_type, audit.c.object_id, sa.cast(audit.c.before, sa.Text), sa.cast(audit.c.after, sa.Text),
              audit.c.ip, audit.c.db_user]
    previous = GENESIS
    for row in bind.execute(sa.select(*fields).order_by(audit.c.id)).all():
        values = [None if v is None else utc_text(v) if isinstance(v, datetime) else str(v) for v in row]
        digest = row_hash([*values, previous])
        bind.execute(audit.update().where(audit.c.id == row[0]).values(prev_hash=previous, row_hash=digest))
        previous = digest


def _sequence() -> str:
    return str(op.get_bind().scalar(sa.text("SELECT pg_get_serial_sequence('audit_log', 'id')")))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"no audit chain triggers for the {dialect} dialect")
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=200), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"], unique=False)
    op.create_table(
        "login_throttle",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("client", sa.String(length=45), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('pair', 'client', 'account')", name="ck_login_throttle_scope"),
        sa.PrimaryKeyConstraint("scope", "client", "account"),
    )
    op.create_index(op.f("ix_login_throttle_account"), "login_throttle", ["account"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_check", sa.JSON(), nullable=True))

    if dialect == "sqlite":
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER audit_log_no_{verb}")
    else:
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("db_user", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
    _chain_existing_rows()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("row_hash", existing_type=sa.String(length=64), nullable=False)
    if dialect == "sqlite":
        for statement in (*SQLITE_APPEND_ONLY, SQLITE_CHAIN):
            op.execute(statement)
        return
    schema = op.get_bind().dialect.identifier_preparer.quote(str(op.get_bind().scalar(sa.text(
        "SELECT current_schema()"))))
    op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
    op.execute("ALTER TABLE audit_log ALTER COLUMN id DROP DEFAULT")
    op.execute(PG_FIELD)
    op.execute(_pg_seal(schema, _sequence()))
    op.execute("CREATE TRIGGER audit_log_seal BEFORE INSERT ON audit_log FOR EACH ROW "
               "EXECUTE FUNCTION audit_log_seal()")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("audit_log_chain_only", "audit_log_no_update", "audit_log_no_delete"):
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER audit_log_seal ON audit_log")
        op.execute("DROP FUNCTION audit_log_seal()")
        op.execute("DROP FUNCTION audit_log_field(text)")
        op.execute(f"ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT nextval('{_sequence()}'::regclass)")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("db_user")
    if dialect == "sqlite":
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("audit_check")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("failed_logins", existing_type=sa.Integer(), server_default=None)
    op.drop_index(op.f("ix_login_throttle_account"), table_name="login_throttle")
    op.drop_table("login_throttle")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
