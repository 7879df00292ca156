"""The review service on SQLite and PostgreSQL: one audit row per action, the permission matrix through the service,
self-approval, bulk actions, optimistic locking, login throttling and the append-only audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from pipeline.review.service import (
    AccountLockedError,
    AuthenticationError,
    CommandLine,
    ConcurrentEditError,
    ItemKey,
    ReviewService,
)
from pipeline.review.throttle import BACKOFF_START, PAIR_FREE
from pipeline.review.workflow import Action, InvalidTransition, PermissionDenied, SelfApprovalError, State
from pipeline.store.database import session_factory
from pipeline.store.review_schema import AuditEntry
from pipeline.store.schema import Configuration, Image, ModelSet, Patient
from tests.review.conftest import FAST_HASH, LABELS, PASSWORD


def _make_keys(engine: Engine, cases: int) -> list[ItemKey]:
    """Review item keys of ``cases`` new cases × structures 1 and 2 of one new configuration."""
    with session_factory(engine).begin() as session:
        model_set = ModelSet(identity="m", name="m", source="t", nnunet_configuration="3d", labels=LABELS)
        configuration = Configuration(name="DE", position=0, members=[], views=[], temperature_scaling=False)
        model_set.configurations = [configuration]
        images = [Image(patient=Patient(pseudonym=f"P{n}"), name=f"case-{n}", cohort="c", source_kind="image",
                        source_path="/x", size=[1, 1, 1], spacing=[1, 1, 1], origin=[0, 0, 0],
                        direction=[1, 0, 0, 0, 1, 0, 0, 0, 1], content_hash="0" * 64) for n in range(cases)]
        session.add_all([model_set, *images])
        session.flush()
        return [ItemKey(image.id, configuration.id, c) for image in images for c in (1, 2)]


@pytest.fixture
def keys(engine: Engine) -> list[ItemKey]:
    """Four review items: two cases × structures 1 and 2."""
    return _make_keys(engine, 2)


def _audit(engine: Engine) -> list[AuditEntry]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def _count(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_a_review_cycle_writes_exactly_one_audit_row_per_action(
    service: ReviewService, users: dict[str, int], keys: list[ItemKey], engine: Engine, tmp_path: Path
) -> None:
    before = _count(engine)
    key = keys[0]
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("login", lambda: service.authenticate("reviewer", PASSWORD, ip="10.0.0.7")),
        ("review.start_review", lambda: service.start_review(users["reviewer"], key, expected_version=0)),
        ("review.decide", lambda: service.record_decision(users["reviewer"], key, "edited", "moved the edge")),
        ("review.reopen", lambda: service.reopen(users["reviewer2"], key)),
        ("review.decide", lambda: service.record_decision(users["reviewer2"], key, "accepted", None)),
        ("review.approve", lambda: service.approve(users["approver"], key, expected_version=4)),
        ("export.worklist_csv", lambda: service.export(users["reviewer"], "worklist_csv", "DE",
                                                       lambda: _touch(tmp_path / "w.csv"))),
        ("user.create", lambda: service.create_user(users["admin"], "newcomer", PASSWORD, "viewer")),
    ]
    for number, (action, step) in enumerate(steps, start=1):
        step()
        assert _count(engine) == before + number, action
        assert _audit(engine)[-1].action == action and _audit(engine)[-1].outcome == "ok"
    rows = _audit(engine)[before:]
    assert rows[0].ip == "10.0.0.7" and rows[0].actor == "reviewer"
    approve = rows[5]
    assert approve.before["state"] == "reviewed" and approve.before["reviewer"] == "reviewer2"
    assert approve.after == {**approve.before, "state": "approved", "approver": "approver", "version": 5}
    assert rows[6].after["sha256"] and rows[6].after["path"].endswith("w.csv")
    assert "password" not in str(rows[7].after) and rows[7].actor == "admin"


def _touch(path: Path) -> Path:
    path.write_text("case\n")
    return path


def test_self_approval_is_refused_and_audited(
    service: ReviewService, users: dict[str, int], keys: list[ItemKey], engine: Engine
) -> None:
    key = keys[1]
    service.start_review(users["approver"], key)
    service.record_decision(users["approver"], key, "accepted", None)
    count = _count(engine)
    with pytest.raises(SelfApprovalError, match="approver reviewed this item and may not approve it"):
        service.approve(users["approver"], key)
    denied = _audit(engine)[-1]
    assert _count(engine) == count + 1
    assert (denied.action, denied.outcome, denied.actor) == ("review.approve", "denied", "approver")
    assert "SelfApprovalError" in denied.after["reason"]
    assert service.approve(users["approver2"], key).state == State.APPROVED


SERVICE_ACTIONS: dict[Action, Callable[[ReviewService, int, ItemKey, Path], Any]] = {
    Action.VIEW: lambda s, u, k, _: s.check(u, Action.VIEW),
    Action.START_REVIEW: lambda s, u, k, _: s.start_review(u, k),
    Action.DECIDE: lambda s, u, k, _: s.record_decision(u, k, "accepted", None),
    Action.REOPEN: lambda s, u, k, _: s.reopen(u, k),
    Action.APPROVE: lambda s, u, k, _: s.approve(u, k),
    Action.EXPORT: lambda s, u, k, folder: s.export(u, "worklist_csv", "x", lambda: _touch(folder / f"{u}.csv")),
    Action.VIEW_AUDIT: lambda s, u, k, _: s.audit_entries(u),
    Action.MANAGE_USERS: lambda s, u, k, _: s.list_users(u),
}


def test_the_permission_matrix_through_the_service(
    service: ReviewService, users: dict[str, int], engine: Engine, tmp_path: Path
) -> None:
    """Each role × each service action: allowed ones succeed, others are refused (and audited when they write)."""
    from pipeline.review.workflow import allowed

    all_keys = _make_keys(engine, 8)
    for number, role in enumerate(("viewer", "reviewer", "approver", "admin")):
        actor, keys = users[role], all_keys[4 * number:4 * number + 4]
        # item states that make each workflow action valid for this actor
        key_for = {Action.START_REVIEW: keys[0], Action.DECIDE: keys[1], Action.REOPEN: keys[2],
                   Action.APPROVE: keys[3]}
        service.bulk(users["reviewer2"], Action.START_REVIEW, keys[1:])
        service.bulk(users["reviewer2"], Action.DECIDE, keys[1:], decision="accepted")
        if allowed(role, Action.DECIDE):  # deciding needs the actor to hold the item in review
            service.reopen(actor, keys[1])
        for action, call in SERVICE_ACTIONS.items():
            if allowed(role, action):
                call(service, actor, key_for.get(action, keys[0]), tmp_path)
                continue
            count = _count(engine)
            with pytest.raises(PermissionDenied, match=f"{role} \\({role}\\) may not {action}"):
                call(service, actor, key_for.get(action, keys[0]), tmp_path)
            audited = action not in (Action.VIEW, Action.VIEW_AUDIT, Action.MANAGE_USERS)  # reads: not audited
            assert _count(engine) == count + audited, (role, action)


def test_bulk_actions_write_one_row_per_item_or_nothing(
    service: ReviewService, users: dict[str, int], keys: list[ItemKey], engine: Engine
) -> None:
    count = _count(engine)
    done = service.bulk(users["reviewer"], Action.START_REVIEW, keys)
    assert [d.state for d in done] == [State.IN_REVIEW] * 4 and _count(engine) == count + 4
    service.bulk(users["reviewer"], "decide", keys[:3], decision="accepted")
    assert _count(engine) == count + 7
    with pytest.raises(InvalidTransition, match=rf"item 4 of 4 \({keys[3].text()}\): cannot approve an item that"):
        service.bulk(users["approver"], Action.APPROVE, keys)
    assert _count(engine) == count + 8 and _audit(engine)[-1].outcome == "denied"
    with session_factory(engine)() as session:  # nothing of the refused bulk was kept
        assert not session.execute(text("SELECT id FROM review_items WHERE state = 'approved'")).all()
    service.bulk(users["approver"], Action.APPROVE, keys[:3])
    assert _count(engine) == count + 11


def test_a_stale_version_is_refused(service: ReviewService, users: dict[str, int], keys: list[ItemKey]) -> None:
    item = service.start_review(users["reviewer"], keys[0])
    service.record_decision(users["reviewer"], keys[0], "accepted", None, expected_version=item.version)
    with pytest.raises(ConcurrentEditError, match="version 2, not 1"):
        service.reopen(users["reviewer2"], keys[0], expected_version=item.version)


def test_unknown_items_and_deactivated_users_are_refused(
    service: ReviewService, users: dict[str, int], keys: list[ItemKey], engine: Engine
) -> None:
    with pytest.raises(LookupError, match="class 7 is not one of the model's 3 labels"):
        service.start_review(users["reviewer"], ItemKey(keys[0].image_id, keys[0].configuration_id, 7))
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET active = false WHERE username = 'reviewer'"))
    with pytest.raises(PermissionDenied, match="unknown or deactivated"):
        service.start_review(users["reviewer"], keys[0])
    assert _audit(engine)[-1].actor == f"user#{users['reviewer']}"


def test_login_throttling_delays_the_guessing_client_but_not_the_user(engine: Engine) -> None:
    now = [datetime(2026, 11, 29, 8, 0, tzinfo=UTC)]
    service = ReviewService(engine, password_method=FAST_HASH, clock=lambda: now[0])
    service.create_user(CommandLine("tester"), "ann", PASSWORD, "reviewer")
    count = _count(engine)
    for _ in range(PAIR_FREE):
        with pytest.raises(AuthenticationError, match=r"^invalid username or password$"):
            service.authenticate("ann", "wrong password!", ip="10.1.1.1")
    with pytest.raises(AccountLockedError, match="too many failed logins: try again in 30 s"):
        service.authenticate("ann", PASSWORD, ip="10.1.1.1")  # locked: even the right password is refused
    assert service.authenticate("ann", PASSWORD, ip="10.2.2.2").username == "ann"  # the user elsewhere is not
    with pytest.raises(AuthenticationError, match=r"^invalid username or password$"):
        service.authenticate("nobody", PASSWORD)
    rows = _audit(engine)[count:]
    assert [r.outcome for r in rows] == ["failure"] * 5 + ["locked", "ok", "failure"]
    assert rows[4].after["locked_until"] == (now[0] + BACKOFF_START).isoformat()
    assert rows[5].after == {"scope": "pair", "locked_until": (now[0] + BACKOFF_START).isoformat()}
    assert rows[-1].actor == "nobody" and rows[-1].actor_id is None
    now[0] += BACKOFF_START + timedelta(seconds=1)  # a delay, not a denial: one more try, then twice as long
    with pytest.raises(AuthenticationError, match=r"^invalid username or password$"):
        service.authenticate("ann", "wrong password!", ip="10.1.1.1")
    with pytest.raises(AccountLockedError, match="try again in 60 s"):
        service.authenticate("ann", PASSWORD, ip="10.1.1.1")
    now[0] += 2 * BACKOFF_START
    assert service.authenticate("ann", PASSWORD, ip="10.1.1.1").username == "ann"
    assert _audit(engine)[-1].outcome == "ok"
    for _ in range(PAIR_FREE - 1):  # the success started the pair afresh
        with pytest.raises(AuthenticationError, match=r"^invalid username or password$"):
            service.authenticate("ann", "wrong password!", ip="10.1.1.1")


def test_accounts_are_validated(service: ReviewService, users: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 12 characters"):
        service.create_user(CommandLine(), "short", "tiny", "viewer")
    with pytest.raises(ValueError, match="exists already"):
        service.create_user(CommandLine(), "viewer", PASSWORD, "viewer")
    with pytest.raises(ValueError, match="unknown role 'root'"):
        service.create_user(CommandLine(), "rooty", PASSWORD, "root")
    with pytest.raises(PermissionDenied, match="may not manage_users"):
        service.create_user(users["approver"], "sneaky", PASSWORD, "admin")
    listed = {u.username: u.role.value for u in service.list_users(users["admin"])}
    assert listed["approver2"] == "approver" and len(listed) == 6


def test_accounts_change_role_are_deactivated_and_get_new_passwords(
    service: ReviewService, users: dict[str, int], engine: Engine
) -> None:
    count = _count(engine)
    assert service.update_user(users["admin"], "viewer", role="reviewer").role == "reviewer"
    assert service.check(users["viewer"], Action.START_REVIEW).role == "reviewer"
    assert not service.update_user(CommandLine("tester"), "viewer", active=False).active
    with pytest.raises(PermissionDenied, match="unknown or deactivated"):
        service.check(users["viewer"], Action.VIEW)
    with pytest.raises(AuthenticationError):
        service.authenticate("viewer", PASSWORD)
    new_password = "a different passphrase"
    service.update_user(CommandLine("tester"), "viewer", active=True, password=new_password)
    assert service.authenticate("viewer", new_password).username == "viewer"
    with pytest.raises(PermissionDenied, match="may not manage_users"):
        service.update_user(users["approver"], "reviewer", role="admin")
    for wrong, reason in (({"role": "root"}, "unknown role 'root'"), ({}, "nothing to change"),
                          ({"password": "tiny"}, "at least 12 characters")):
        with pytest.raises(ValueError, match=reason):
            service.update_user(CommandLine("tester"), "viewer", **wrong)
    with pytest.raises(LookupError, match="no user named 'ghost'"):
        service.update_user(CommandLine("tester"), "ghost", active=False)
    rows = _audit(engine)[count:]
    assert [(r.action, r.outcome) for r in rows] == [
        ("user.update", "ok"), ("user.update", "ok"), ("login", "failure"), ("user.update", "ok"), ("login", "ok"),
        ("user.update", "denied"), *[("user.update", "denied")] * 4]
    assert (rows[0].before, rows[0].after) == ({"role": "viewer"}, {"role": "reviewer"})
    assert rows[3].after == {"active": True, "password": "changed"} and "a different" not in str(rows[3].after)


def test_the_audit_log_refuses_update_and_delete_at_the_database_level(
    service: ReviewService, users: dict[str, int], engine: Engine
) -> None:
    service.authenticate("viewer", PASSWORD)
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as connection:
            connection.execute(text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="audit_log is append-only: TRUNCATE"), engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_log"))
    assert {r.actor for r in _audit(engine)} >= {"viewer", "cli:tester"}
    entries = service.audit_entries(users["admin"], action="login", outcome="ok")
    assert [e.actor for e in entries] == ["viewer"]
