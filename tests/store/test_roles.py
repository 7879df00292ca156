"""Least-privilege PostgreSQL roles (docs/postgres-roles.sql) on the real server, with real operations.

A fresh database is migrated to head and seeded as its owner; the script creates the three group roles under a
name prefix unique to this run (role names are cluster-wide) and login roles are made in them. Then: the read role
checks the head and reads but writes nothing; the dashboard role runs the review service end to end (logins,
review, approval, each with its audit row) and serves every page of the app, but cannot delete audit rows, manage
users or write results; the batch role writes what the nightly batch and the protocol stage write but touches
neither the review tables nor the audit log. Every role is dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from psycopg import errors
from sqlalchemy import Engine, create_engine, delete, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from benchmarks.store_seed import Seeded, SeedPlan, seed_store
from pipeline.batch.locking import claim
from pipeline.batch.persist import (
    ImageRecord,
    ResultRows,
    deployed_fits,
    ensure_model_set,
    replace_processing,
    upsert_image,
    write_results,
)
from pipeline.batch.runner import _mark_interrupted
from pipeline.inference.grid import Configuration as GridConfiguration
from pipeline.inference.model_set import Member as LoadedMember
from pipeline.inference.model_set import ModelSet as LoadedModelSet
from pipeline.review.service import AuthenticationError, CommandLine, ItemKey, ReviewService
from pipeline.review.workflow import PermissionDenied, Role, State
from pipeline.store.audit_chain import verify_engine
from pipeline.store.cohort_rows import latest_protocol, protocol_case_rows
from pipeline.store.database import alembic_config, check_at_head, make_engine, refresh_statistics, session_factory
from pipeline.store.deployed import DEPLOYED_ROLES
from pipeline.store.review_schema import AuditEntry, User
from pipeline.store.schema import (
    WHOLE_CASE,
    Artifact,
    Base,
    CaseFailure,
    CaseResult,
    Image,
    Patient,
    Processing,
    Protocol,
    Run,
    SplitRole,
    TemperatureFit,
)
from tests.conftest import REPO_ROOT
from tests.store.conftest import POSTGRES_ADMIN, _drop_postgres, _fresh_postgres

SCRIPT = REPO_ROOT / "docs" / "postgres-roles.sql"
PLAN = SeedPlan(patients=2, configurations=("Base", "Base+TS"), repeats=1, map_cases=1, map_shape=(8, 24, 24),
                extra_cases=False)
FAST_HASH = "scrypt:1024:8:1"  # tests only
PASSWORD = "correct horse battery staple"
REVIEW_TABLES = {"users", "user_sessions", "login_throttle", "review_items", "audit_log", "trend_levels",
                 "review_time", "studies", "study_cases", "study_reviewers", "study_assignments"}
SECRET_COLUMNS = {"users": "password_hash", "user_sessions": "token_hash"}  # the read role's column-level SELECT


@dataclass(frozen=True)
class RoleStore:
    """The seeded store, its owner's URL, the group roles' prefix and a login URL per group role."""

    owner: str
    root: Path
    seeded: Seeded
    prefix: str
    logins: dict[str, str]  # group suffix (batch, dashboard_read, dashboard) -> URL of a login role in it

    def engine(self, group: str) -> Engine:
        return make_engine(self.logins[group])


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _run_script(url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"prefix={prefix}", "-f", str(SCRIPT),
                           _libpq(url)], capture_output=True, text=True, timeout=60)


def _owner(url: str, *statements: str, **params: Any) -> list[Any]:
    """Run ``statements`` as the owner in one transaction; the rows of the last one (when it returns rows)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                result = connection.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _admin(*statements: str) -> None:
    engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def _reset_sequences(url: str) -> None:
    """The seed assigns ids itself: move each id sequence past the seeded rows, as real inserts would have."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            if "id" in table.columns and table.columns["id"].primary_key:
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"))
    engine.dispose()


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleStore]:
    name, url = _fresh_postgres()
    prefix = f"qat{uuid.uuid4().hex[:10]}"
    groups = ("batch", "dashboard_read", "dashboard")
    logins = {group: f"{prefix}_{group}_login" for group in groups}
    try:
        command.upgrade(alembic_config(url), "head")
        root = tmp_path_factory.mktemp("roles_artifacts")
        seeded = seed_store(url, root, PLAN)
        _reset_sequences(url)
        owner = make_engine(url)
        service = ReviewService(owner, password_method=FAST_HASH)
        for username, role in (("rita-reviewer", Role.REVIEWER), ("abe-approver", Role.APPROVER)):
            service.create_user(CommandLine("tester"), username, PASSWORD, role)
        owner.dispose()
        done = _run_script(url, prefix)
        assert done.returncode == 0, done.stderr
        _admin(*(f'CREATE ROLE "{login}" LOGIN IN ROLE "{prefix}_{group}"' for group, login in logins.items()))
        base = make_url(url)
        yield RoleStore(url, root, seeded, prefix, {
            group: base.set(username=login).render_as_string(hide_password=False) for group, login in logins.items()})
    finally:
        roles_made = [*logins.values(), *(f"{prefix}_{group}" for group in groups)]
        cleanup = create_engine(url, isolation_level="AUTOCOMMIT")
        with cleanup.connect() as connection:
            existing = set(connection.scalars(text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p"),
                                              {"p": f"{prefix}%"}))
            for role in roles_made:
                if role in existing:
                    connection.execute(text(f'DROP OWNED BY "{role}"'))
        cleanup.dispose()
        _drop_postgres(name)
        _admin(*(f'DROP ROLE IF EXISTS "{role}"' for role in roles_made))


def _denied(engine: Engine, statement: str, table: str, params: dict[str, Any] | None = None) -> None:
    """``statement`` fails for lack of a privilege on ``table`` (not, e.g., on the audit log's trigger, which raises
    the same SQLSTATE with another message)."""
    with pytest.raises(ProgrammingError) as raised, engine.begin() as connection:
        connection.execute(text(statement), params or {})
    assert isinstance(raised.value.orig, errors.InsufficientPrivilege), raised.value
    assert f"permission denied for table {table}" in str(raised.value.orig), raised.value


def _privileges(url: str) -> list[Any]:
    """Every ACL of the schema's tables, their columns and sequences (to compare runs of the script)."""
    return _owner(url, "SELECT c.relname, c.relkind, c.relacl::text, (SELECT array_agg(a.attname || '=' || "
                  "a.attacl::text ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS "
                  "NOT NULL) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'S') ORDER BY c.relname")


def test_the_grant_matrix_covers_every_table_and_a_rerun_restores_it(roles: RoleStore) -> None:
    tables = sorted({*Base.metadata.tables, "alembic_version"})
    groups = [f"{roles.prefix}_{g}" for g in ("batch", "dashboard_read", "dashboard")]
    rows = _owner(roles.owner, "SELECT r.name, t.name, p.name FROM unnest(CAST(:groups AS text[])) AS r(name) "
                  "CROSS JOIN unnest(CAST(:tables AS text[])) AS t(name) "
                  "CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p(name) "
                  "WHERE has_table_privilege(r.name, t.name, p.name)", groups=groups, tables=tables)
    granted: dict[tuple[str, str], set[str]] = {}
    for group, table, privilege in rows:
        granted.setdefault((group.removeprefix(roles.prefix + "_"), table), set()).add(privilege)
    expected: dict[tuple[str, str], set[str]] = {}
    for table in tables:
        if table == "alembic_version":
            expected[("batch", table)] = {"SELECT"}
        elif table not in REVIEW_TABLES:  # a results table
            expected[("batch", table)] = {"SELECT", "INSERT", "UPDATE", "DELETE"}
        if table not in SECRET_COLUMNS:  # users, user_sessions: column-level SELECT without their secrets
            expected[("dashboard_read", table)] = {"SELECT"}
            expected[("dashboard", table)] = {"SELECT"}
    expected[("dashboard", "users")] = {"SELECT"}
    for table in ("review_items", "login_throttle", "review_time"):  # review_time: the measured review clocks
        expected[("dashboard", table)] = {"SELECT", "INSERT", "UPDATE"}
    expected[("dashboard", "user_sessions")] = {"SELECT", "INSERT"}  # and UPDATE of three columns, below
    expected[("dashboard", "audit_log")] = {"SELECT", "INSERT"}
    expected[("batch", "audit_log")] = {"SELECT", "INSERT"}  # deployed temperatures are audited; runs verify the chain
    expected[("dashboard", "trend_levels")] = {"SELECT", "INSERT", "UPDATE", "DELETE"}  # an admin sets the levels
    expected[("batch", "trend_levels")] = {"SELECT"}  # a run is checked against them
    assert granted == expected
    for table, secret in SECRET_COLUMNS.items():
        columns = _owner(roles.owner, f"SELECT a.attname, has_column_privilege('{roles.prefix}_dashboard_read', "
                         f"'{table}', a.attname, 'SELECT'), has_column_privilege('{roles.prefix}_dashboard', "
                         f"'{table}', a.attname, 'UPDATE') FROM pg_attribute a WHERE a.attrelid = '{table}'::regclass "
                         "AND a.attnum > 0 AND NOT a.attisdropped")
        assert {c for c, readable, _ in columns if not readable} == {secret}
        writable = {"users": {"last_login_at"}, "user_sessions": {"last_seen_at", "revoked_at", "revoked_reason"}}
        assert {c for c, _, can in columns if can} == writable[table]
    opens = _owner(roles.owner, "SELECT a.attname FROM pg_attribute a "
                   "WHERE a.attrelid = 'study_assignments'::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                   f"AND has_column_privilege('{roles.prefix}_dashboard', 'study_assignments', a.attname, 'UPDATE')")
    assert [row[0] for row in opens] == ["opened_at"]  # a reviewer's first opening of a study case, nothing else
    sequences = _owner(roles.owner, "SELECT r.name, c.relname FROM unnest(CAST(:groups AS text[])) AS r(name) "
                       "CROSS JOIN pg_class c WHERE c.relkind = 'S' AND has_sequence_privilege(r.name, c.oid, "
                       "'USAGE')", groups=groups)
    serial = {t.name for t in Base.metadata.sorted_tables if "id" in t.columns and t.columns["id"].primary_key}
    assert {(g.removeprefix(roles.prefix + "_"), q) for g, q in sequences} == {
        ("batch", f"{t}_id_seq") for t in serial - REVIEW_TABLES} | {
        ("dashboard", "review_items_id_seq"), ("dashboard", "user_sessions_id_seq"),
        ("dashboard", "review_time_id_seq")}  # audit_log: its trigger's

    before = _privileges(roles.owner)
    _owner(roles.owner, f"GRANT DELETE ON audit_log TO {roles.prefix}_dashboard",
           f"GRANT UPDATE (password_hash, role) ON users TO {roles.prefix}_dashboard",
           f"GRANT USAGE ON SEQUENCE users_id_seq TO {roles.prefix}_batch")
    assert _privileges(roles.owner) != before
    done = _run_script(roles.owner, roles.prefix)
    assert done.returncode == 0, done.stderr
    assert _privileges(roles.owner) == before  # idempotent, and stray grants are taken back


def test_a_table_the_script_does_not_classify_stops_it(roles: RoleStore) -> None:
    _owner(roles.owner, "CREATE TABLE unclassified_extra (id integer)")
    try:
        before = _privileges(roles.owner)
        done = _run_script(roles.owner, roles.prefix)
        assert done.returncode != 0 and "not classified" in done.stderr and "unclassified_extra" in done.stderr
        assert _privileges(roles.owner) == before
    finally:
        _owner(roles.owner, "DROP TABLE unclassified_extra")


def test_the_read_role_checks_the_head_and_reads_but_writes_nothing(roles: RoleStore) -> None:
    engine = roles.engine("dashboard_read")
    try:
        check_at_head(engine)
        with session_factory(engine)() as session:
            assert session.scalar(select(func.count()).select_from(CaseResult)) > 0
            protocol = latest_protocol(session)
            assert protocol is not None and not protocol_case_rows(session, protocol).empty
            assert set(session.scalars(select(User.username))) == {"rita-reviewer", "abe-approver"}
        _denied(engine, "SELECT password_hash FROM users", "users")
        _denied(engine, "SELECT token_hash FROM user_sessions", "user_sessions")
        _denied(engine, "INSERT INTO case_results (processing_id, image_id, configuration_id, has_reference, "
                "roi_voxels, voxel_ml, seconds) SELECT processing_id, image_id, configuration_id, "
                "has_reference, roi_voxels, voxel_ml, seconds FROM case_results LIMIT 1",
                "case_results")
        _denied(engine, "UPDATE metric_values SET value = 1", "metric_values")
        _denied(engine, "INSERT INTO audit_log (at, actor, action, outcome, object_type) "
                "VALUES (now(), 'x', 'x', 'ok', 'x')", "audit_log")
        _denied(engine, "UPDATE review_items SET comment = 'x'", "review_items")
        with pytest.raises(ProgrammingError, match="permission denied for table login_throttle"):  # the throttle
            ReviewService(engine, password_method=FAST_HASH).authenticate("rita-reviewer", PASSWORD)
    finally:
        engine.dispose()


def _image_id(roles: RoleStore, name: str) -> int:
    return int(_owner(roles.owner, f"SELECT id FROM images WHERE name = '{name}'")[0][0])


def test_the_dashboard_role_runs_the_review_service_but_nothing_else(roles: RoleStore) -> None:
    engine = roles.engine("dashboard")
    service = ReviewService(engine, password_method=FAST_HASH)
    key = ItemKey(_image_id(roles, roles.seeded.phantoms[0]), roles.seeded.configurations["Base"], 1)
    first = int(_owner(roles.owner, "SELECT coalesce(max(id), 0) FROM audit_log")[0][0])
    try:
        check_at_head(engine)
        with pytest.raises(AuthenticationError):
            service.authenticate("rita-reviewer", "not the password", ip="127.0.0.1")
        rita = service.authenticate("rita-reviewer", PASSWORD, ip="127.0.0.1")
        assert service.start_review(rita.id, key).state == State.IN_REVIEW
        reviewed = service.record_decision(rita.id, key, "edited", "contour moved 2 mm")
        with pytest.raises(PermissionDenied):
            service.approve(rita.id, key)
        abe = service.authenticate("abe-approver", PASSWORD)
        approved = service.approve(abe.id, key, expected_version=reviewed.version)
        assert (approved.state, approved.reviewer, approved.approver) == (State.APPROVED, "rita-reviewer",
                                                                         "abe-approver")
        assert [(r.action, r.outcome) for r in reversed(service.audit_entries(abe.id)) if r.id > first] == [
            ("login", "failure"), ("login", "ok"), ("review.start_review", "ok"), ("review.decide", "ok"),
            ("review.approve", "denied"), ("login", "ok"), ("review.approve", "ok")]
        users = _owner(roles.owner, "SELECT username, last_login_at IS NOT NULL FROM users ORDER BY 1")
        assert users == [("abe-approver", True), ("rita-reviewer", True)]
        pairs = _owner(roles.owner, "SELECT account, failures FROM login_throttle WHERE scope = 'pair' ORDER BY 1")
        assert pairs == [("abe-approver", 0), ("rita-reviewer", 0)]  # the success took the failure back
        token = service.start_session(rita.id, max_hours=1, ip="127.0.0.1", user_agent="test")
        assert service.resolve_session(token, idle_minutes=5)[1].username == "rita-reviewer"
        assert service.record_logout(rita.id) == 1 and service.resolve_session(token, idle_minutes=5) is None
        _forged_audit_rows_are_sealed(roles, engine, rita.id)

        _denied(engine, "DELETE FROM audit_log", "audit_log")
        _denied(engine, "DELETE FROM review_items", "review_items")
        _denied(engine, "INSERT INTO users (username, password_hash, role, active, created_at) "
                "VALUES ('mallory', 'x', 'admin', true, now())", "users")
        _denied(engine, "UPDATE user_sessions SET token_hash = 'x'", "user_sessions")
        _denied(engine, "DELETE FROM user_sessions", "user_sessions")
        _denied(engine, "UPDATE users SET role = 'admin'", "users")
        _denied(engine, "UPDATE users SET password_hash = 'x'", "users")
        _denied(engine, "UPDATE case_results SET roi_voxels = 1", "case_results")
        _denied(engine, "UPDATE metric_values SET value = 1", "metric_values")
        _denied(engine, "DELETE FROM case_results", "case_results")
        with pytest.raises(ProgrammingError, match="permission denied for table users"):
            service.create_user(CommandLine("tester"), "mallory", PASSWORD, Role.ADMIN)
    finally:
        engine.dispose()


def _forged_audit_rows_are_sealed(roles: RoleStore, engine: Engine, user_id: int) -> None:
    """An INSERT into audit_log with a time and actor of the caller's choice: the trigger sets the server's time and
    the name of actor_id (and the role that wrote it); a row naming a user without its id is refused; the chain
    stays intact."""
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO audit_log (id, at, actor_id, actor, action, outcome, object_type, "
                                "prev_hash, row_hash, db_user) VALUES (1, '2001-01-01', :user, 'someone else', "
                                "'forged', 'ok', 'x', 'a', 'b', 'postgres')"), {"user": user_id})
    with pytest.raises(ProgrammingError, match="is a user, so the row needs its actor_id"), engine.begin() as c:
        c.execute(text("INSERT INTO audit_log (at, actor, action, outcome, object_type) "
                       "VALUES (now(), 'abe-approver', 'forged', 'ok', 'x')"))
    row = _owner(roles.owner, "SELECT id, at > now() - interval '1 hour', actor, db_user FROM audit_log "
                 "WHERE action = 'forged'")
    assert len(row) == 1 and row[0][0] != 1 and row[0][1:] == (True, "rita-reviewer", make_url(
        roles.logins["dashboard"]).username)
    owner = make_engine(roles.owner)
    try:
        assert verify_engine(owner).ok
    finally:
        owner.dispose()


def test_the_app_serves_every_page_as_the_dashboard_role(roles: RoleStore) -> None:
    """Login, every registered page through Dash's page callback (the queries run as the role), logout."""
    script = (
        "import re, sys, dash, app\n"
        "client = app.server.test_client()\n"
        "token = re.search(r'name=\"csrf_token\" value=\"([^\"]+)\"', client.get('/login').get_data(as_text=True))\n"
        "answer = client.post('/login', data={'csrf_token': token.group(1), 'username': 'abe-approver',\n"
        "                                     'password': sys.argv[1], 'next': '/'})\n"
        "assert answer.status_code == 302 and answer.headers['Location'] == '/', answer.get_data(as_text=True)\n"
        "headers = {'X-CSRFToken': client.get_cookie('_csrf_token').value}\n"
        "paths = sorted(re.sub('<[^>]+>', sys.argv[2], p['path_template'] or p['path'])\n"
        "               for p in dash.page_registry.values() if p['path'] != '/404')\n"
        "assert {'/', '/cohort', '/runs'} <= set(paths), paths\n"
        "for path in paths:\n"
        "    assert client.get(path).status_code == 200, path\n"
        "    body = {'output': '.._pages_content.children..._pages_store.data..',\n"
        "            'outputs': [{'id': '_pages_content', 'property': 'children'},\n"
        "                        {'id': '_pages_store', 'property': 'data'}],\n"
        "            'inputs': [{'id': '_pages_location', 'property': 'pathname', 'value': path},\n"
        "                       {'id': '_pages_location', 'property': 'search', 'value': ''}],\n"
        "            'changedPropIds': ['_pages_location.pathname'], 'state': []}\n"
        "    answer = client.post('/_dash-update-component', json=body, headers=headers)\n"
        "    text = answer.get_data(as_text=True)\n"
        "    assert answer.status_code == 200 and 'permission denied' not in text, (path, text[-2000:])\n"
        "    assert 'cannot open the store' not in text, (path, text[-2000:])\n"
        "answer = client.post('/logout', data={'csrf_token': headers['X-CSRFToken']})\n"
        "assert answer.status_code == 302, answer.get_data(as_text=True)\n"
        "print(' '.join(paths))\n"
    )
    first = int(_owner(roles.owner, "SELECT coalesce(max(id), 0) FROM audit_log")[0][0])
    env = {**os.environ, "QA_DATABASE_URL": roles.logins["dashboard"], "QA_ARTIFACTS_DIR": str(roles.root)}
    done = subprocess.run([sys.executable, "-c", script, PASSWORD, roles.seeded.phantoms[0]], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "/patient/" in done.stdout
    actions = _owner(roles.owner, "SELECT action, outcome FROM audit_log WHERE id > :first ORDER BY id", first=first)
    assert actions[0] == ("login", "ok") and ("logout", "ok") in actions, actions


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_batch_role_writes_the_results_but_not_the_review_tables(roles: RoleStore) -> None:
    engine = roles.engine("batch")
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    loaded = LoadedModelSet(folder=Path("/models/roles_test"), dataset_json={}, plans={"test": roles.prefix},
                            configuration="3d_fullres", labels=("background", "lymph_nodes", "spleen"),
                            members=(LoadedMember("fold_0", Path("fold_0/checkpoint_final.pth"), "0" * 64),))
    grid = (GridConfiguration("Base", ("fold_0",), ((),), False),
            GridConfiguration("Base+TS", ("fold_0",), ((),), True))
    image_values = {"cohort": "clinical", "source_kind": "nifti", "source_path": "/data/roles.nii.gz",
                    "size": [24, 24, 8], "spacing": [1.5, 1.5, 3.0], "origin": [0.0, 0.0, 0.0],
                    "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "content_hash": "a" * 64}
    processing = {"run_id": None, "input_hash": "b" * 64, "code_version": "test", "forward_passes": 1,
                  "seconds_inference": 0.1, "seconds_metrics": 0.1, "seconds_storage": 0.1}
    result = {"temperature": None, "has_reference": False, "roi_voxels": 10, "voxel_ml": 0.00675, "seconds": 0.1}
    values = [{"class_index": WHOLE_CASE, "name": "mean_entropy_roi", "value": 0.1}]
    try:
        check_at_head(engine)
        with claim(engine, "roles_case") as held:
            assert held
            with sessions.begin() as session:  # what run_batch writes before the cases
                stale = Run(kind="run", status="running", host=socket.gethostname(), pid=_dead_pid(),
                            code_version="test", options={})
                session.add(stale)
                session.flush()
                _mark_interrupted(session)
                model_set, configurations = ensure_model_set(session, loaded, grid, "roles test")
                run = Run(kind="run", status="running", host=socket.gethostname(), pid=os.getpid(),
                          code_version="test", model_set_id=model_set.id, cases_total=1, options={})
                session.add(run)
            for mrn in (None, "c" * 64):  # a case, then the same case redone: its rows replaced
                with sessions.begin() as session:
                    image = upsert_image(session, ImageRecord("roles_case", "P-roles", image_values, mrn))
                    done = replace_processing(session, image, model_set, processing | {"run_id": run.id},
                                              [{"kind": "ct", "path": "roles_case/ct.zarr", "dtype": "int16",
                                                "shape": [8, 24, 24], "budget": None}], [])
                    write_results(session, image, done.id, [ResultRows(
                        configurations["Base"].id, None, result, values,
                        [{"class_index": 0, "structure": "background", "dsc": None, "predicted_ml": 1.0,
                          "reference_ml": None}],
                        [{"budget_index": 0, "budget": 0.0, "ueo": None, "recall": None, "precision": None,
                          "flagged_ml": 0.0}], [], [])])
            with sessions.begin() as session:
                session.add(CaseFailure(run_id=run.id, case_name="broken", source="/data/broken.nii.gz",
                                        stage="load", reason="unreadable"))
                finished = session.get_one(Run, run.id)
                finished.status, finished.finished_at, finished.cases_done = "failed", now, 1
        refresh_statistics(engine)  # PostgreSQL < 17: skipped with warnings for a non-owner, but no error
        with sessions.begin() as session:  # what the protocol stage writes (pipeline/batch/protocol_stage.py)
            ts = configurations["Base+TS"].id
            session.execute(delete(Protocol).where(Protocol.model_set_id == model_set.id))
            protocol = Protocol(model_set_id=model_set.id, cohort="clinical", seed=0, repeats=1, test_fraction=0.5)
            session.add(protocol)
            session.flush()
            image_id = session.scalar(select(Image.id).where(Image.name == "roles_case"))
            session.add(SplitRole(protocol_id=protocol.id, repeat=0, image_id=image_id, role="test"))
            session.execute(delete(TemperatureFit).where(TemperatureFit.configuration_id == ts,
                                                         TemperatureFit.role.in_(DEPLOYED_ROLES)))
            session.add(TemperatureFit(configuration_id=ts, protocol_id=None, repeat=None, temperature=1.5,
                                       nll_before=0.4, nll_after=0.3, voxels=10, cases=["roles_case"],
                                       role="deployed"))
            session.flush()
            assert [f.temperature for f in deployed_fits(session, configurations)["Base+TS"]] == [1.5]

        with sessions() as session:
            assert session.get_one(Run, stale.id).status == "interrupted"
            assert session.scalar(select(Patient.mrn_hash).where(Patient.pseudonym == "P-roles")) == "c" * 64
            assert session.scalar(select(func.count()).select_from(Processing).where(
                Processing.image_id == image_id)) == 1
            assert session.scalar(select(func.count()).select_from(CaseResult).where(
                CaseResult.image_id == image_id)) == 1
            assert session.scalar(select(func.count()).select_from(Artifact).where(Artifact.image_id == image_id)) == 1

        _denied(engine, "UPDATE audit_log SET actor = 'x'", "audit_log")
        _denied(engine, "DELETE FROM audit_log", "audit_log")
        _denied(engine, "UPDATE review_items SET comment = 'x'", "review_items")
        _denied(engine, "DELETE FROM review_items", "review_items")
        _denied(engine, "SELECT username FROM users", "users")
        with sessions.begin() as session:  # the protocol's configuration-change row
            session.add(AuditEntry(at=now, actor="cli:batch", action="config.deploy_ts", outcome="ok",
                                   object_type="configuration", object_id="set/Base+TS", after={"temperature": 1.5}))
        with pytest.raises(ProgrammingError, match="is a user, so the row needs its actor_id"), engine.begin() as c:
            c.execute(text("INSERT INTO audit_log (at, actor, action, outcome, object_type) "
                           "VALUES ('2001-01-01', 'rita-reviewer', 'forged', 'ok', 'x')"))
        report = verify_engine(engine)  # what a run does at its end, as this role
        assert report.ok and report.rows > 0
    finally:
        engine.dispose()
