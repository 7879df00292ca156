"""The audit log's hash chain on SQLite and PostgreSQL: rows written by the service, the protocol and raw SQL chain
up; an edit, a deletion, an insertion, a reordering and a rewrite of the whole chain after a run's anchor are each
found at the first row they touch (``python -m pipeline audit-verify``: exit 3 and one line); SQLite refuses REPLACE
and any INSERT that does not extend the chain; no caller can store a megabyte in a row."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from pipeline.batch.runner import check_audit_log
from pipeline.cli import main
from pipeline.errors import EXIT_TAMPERED
from pipeline.review.service import AuthenticationError, CommandLine, ReviewService
from pipeline.settings import Settings
from pipeline.store.audit_chain import FIELDS, row_hash, utc_text, verify_engine
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry
from pipeline.store.schema import Run

FAST_HASH = "scrypt:1024:8:1"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A store of each backend with six audit rows (two accounts created, logins, a failure, a logout)."""
    engine = make_engine(store_url)
    service = ReviewService(engine, password_method=FAST_HASH)
    ann = service.create_user(CommandLine("tester"), "ann", PASSWORD, "reviewer").id
    service.create_user(CommandLine("tester"), "bob", PASSWORD, "admin")
    service.authenticate("ann", PASSWORD, ip="10.0.0.1")
    with pytest.raises(AuthenticationError):
        service.authenticate("bob", "wrong password!", ip="10.0.0.2")
    service.record_logout(ann)
    service.authenticate("bob", PASSWORD)
    yield engine
    engine.dispose()


def _tamper(engine: Engine, *statements: str) -> None:
    """Run ``statements`` as someone who owns the database: the append-only triggers put aside first."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            for trigger in ("audit_log_no_update", "audit_log_no_delete", "audit_log_chain_only"):
                connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
        for statement in statements:
            connection.execute(text(statement))
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


def _cli(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False),
                        artifacts_dir=tmp_path / "artifacts", exports_dir=tmp_path / "exports")
    code = main(["audit-verify"], settings)
    return code, capsys.readouterr().out.strip()


def _rehash_from(engine: Engine, first: int) -> None:
    """What an attacker with write access does after an edit: recompute every hash from ``first`` on."""
    columns = ", ".join(f"CAST({c} AS TEXT)" if c in ("before", "after") else c for c in FIELDS[:-1])
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT {columns}, prev_hash FROM audit_log ORDER BY id")).all()
    with session_factory(engine)() as session:
        typed = {r.id: r for r in session.scalars(select(AuditEntry))}
    statements, previous = [], None
    for row in rows:
        values = [None if v is None else str(v) for v in row[:-1]]
        values[1] = utc_text(typed[row[0]].at)
        link = previous if previous is not None and row[0] >= first else row[-1]
        digest = row_hash([*values, link])
        if row[0] >= first:
            statements.append(f"UPDATE audit_log SET prev_hash = '{link}', row_hash = '{digest}' WHERE id = {row[0]}")
        previous = digest if row[0] >= first else typed[row[0]].row_hash
    _tamper(engine, *statements)


def test_every_writer_extends_one_intact_chain(engine: Engine, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with session_factory(engine).begin() as session:  # the protocol stage adds its rows in one flush at the end
        added = [AuditEntry(actor="cli:batch", action="config.deploy_ts", outcome="ok", object_type="configuration",
                            after={"temperature": t}) for t in (1.25, 1.5)]
        session.add_all(added)
        session.flush()
        assert [e.id for e in added] == [7, 8]  # the store's ids, in order, returned to the objects
    with engine.begin() as connection:  # the owner's raw SQL on PostgreSQL (the trigger seals it)
        if engine.dialect.name == "postgresql":
            connection.execute(text("INSERT INTO audit_log (at, actor, action, outcome, object_type) "
                                    "VALUES ('2001-01-01', 'cli:psql', 'note', 'ok', 'x')"))
    report = verify_engine(engine)
    assert report.ok and report.rows == (9 if engine.dialect.name == "postgresql" else 8), report.line()
    assert _cli(engine, tmp_path, capsys) == (0, report.line())
    with session_factory(engine)() as session:
        rows = session.execute(select(AuditEntry.id, AuditEntry.at).order_by(AuditEntry.id)).all()
    assert [r.id for r in rows] == list(range(1, len(rows) + 1))  # the store's ids and time, not the caller's
    assert all(r.at.year >= 2026 for r in rows)


TAMPERING: dict[str, tuple[list[str], int, str]] = {
    "edit": (["UPDATE audit_log SET actor = 'mallory' WHERE id = 3"], 3, "content does not match its hash"),
    "delete": (["DELETE FROM audit_log WHERE id = 3"], 4, "does not follow row #2"),
    "reorder": (["UPDATE audit_log SET id = 100 WHERE id = 2", "UPDATE audit_log SET id = 2 WHERE id = 3",
                 "UPDATE audit_log SET id = 3 WHERE id = 100"], 2, "does not follow row #1"),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_tampering_is_found_at_the_first_row_it_touches(engine: Engine, kind: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    statements, bad, reason = TAMPERING[kind]
    _tamper(engine, *statements)
    report = verify_engine(engine)
    assert (report.ok, report.bad_id) == (False, bad) and reason in report.problem, report.line()
    code, line = _cli(engine, tmp_path, capsys)
    assert code == EXIT_TAMPERED and line == f"audit log TAMPERED at row #{bad}: {report.problem}"


def test_a_row_inserted_with_a_valid_hash_breaks_the_link_of_the_next(engine: Engine) -> None:
    with session_factory(engine)() as session:
        second = session.get_one(AuditEntry, 2)
    forged = [3, utc_text(second.at), None, "cli:mallory", "review.approve", "ok", "review_item", "1/1/1", None,
              None, None, None, second.row_hash]
    digest = row_hash([None if v is None else str(v) for v in forged])
    _tamper(engine, "UPDATE audit_log SET id = id + 100 WHERE id >= 3",
            "INSERT INTO audit_log (id, at, actor, action, outcome, object_type, object_id, prev_hash, row_hash) "
            f"SELECT 3, at, 'cli:mallory', 'review.approve', 'ok', 'review_item', '1/1/1', row_hash, '{digest}' "
            "FROM audit_log WHERE id = 2")
    report = verify_engine(engine)
    assert (report.bad_id, report.problem) == (103, "it does not follow row #3: a row was removed, inserted or "
                                                    "reordered there")


def _anchor(engine: Engine) -> int:
    """A batch run that verified the log and kept its head, as every run does at its end."""
    sessions = session_factory(engine)
    with sessions.begin() as session:
        run = Run(kind="run", status="succeeded", host=socket.gethostname(), pid=os.getpid(), code_version="t",
                  options={})
        session.add(run)
        session.flush()
        run_id = run.id
    assert check_audit_log(engine, sessions, run_id).ok
    with sessions() as session:
        check = session.get_one(Run, run_id).audit_check
    assert check["ok"] and check["rows"] == 6 and check["head_id"] == 6
    return run_id


def test_a_rewritten_chain_is_found_by_the_anchor_a_run_kept(engine: Engine) -> None:
    run_id = _anchor(engine)
    _tamper(engine, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    _rehash_from(engine, 2)
    report = verify_engine(engine)
    assert (report.bad_id, report.problem) == (6, f"run {run_id} recorded another hash for it: the log was "
                                                  "rewritten from there")


def test_removing_the_anchored_head_is_found(engine: Engine) -> None:
    run_id = _anchor(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE id >= 5")
    report = verify_engine(engine)
    assert (report.bad_id, report.problem) == (6, f"run {run_id} recorded it as the head, but it is gone: rows "
                                                  "were removed")


REFUSED_ON_SQLITE: list[Callable[[], str]] = [
    lambda: "REPLACE INTO audit_log (id, at, actor, action, outcome, object_type, prev_hash, row_hash) "
            "VALUES (1, '2001-01-01', 'mallory', 'login', 'ok', 'user', 'x', 'y')",
    lambda: "INSERT OR REPLACE INTO audit_log (id, at, actor, action, outcome, object_type, prev_hash, row_hash) "
            "VALUES (1, '2001-01-01', 'mallory', 'login', 'ok', 'user', 'x', 'y')",
    lambda: "INSERT INTO audit_log (id, at, actor, action, outcome, object_type, prev_hash, row_hash) "
            "VALUES (99, '2001-01-01', 'mallory', 'login', 'ok', 'user', 'x', 'y')",
]


@pytest.mark.parametrize("statement", REFUSED_ON_SQLITE)
def test_sqlite_refuses_replace_and_inserts_off_the_chain(engine: Engine, statement: Callable[[], str]) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no REPLACE; its trigger seals every INSERT (test_every_writer_…)")
    with pytest.raises(DBAPIError, match="audit_log is append-only: an INSERT must extend the hash chain"), \
            engine.begin() as connection:
        connection.execute(text(statement()))
    assert verify_engine(engine).ok and verify_engine(engine).rows == 6


def test_no_caller_stores_a_megabyte_in_a_row(engine: Engine) -> None:
    with session_factory(engine).begin() as session:
        session.add(AuditEntry(actor="cli:x" * 100, action="a" * 100, outcome="ok", object_type="x",
                               object_id="o" * 10_000, after={"reason": "r" * 5_000_000, "k" * 500: 1}))
    with engine.connect() as connection:
        size = connection.scalar(text("SELECT length(CAST(after AS TEXT)) + length(object_id) + length(action) "
                                      "FROM audit_log ORDER BY id DESC LIMIT 1"))
    assert size < 3_000 and verify_engine(engine).ok
