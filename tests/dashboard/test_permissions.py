"""The permission matrix through the real HTTP endpoints, on SQLite and PostgreSQL: each role (viewer, reviewer,
approver, admin) tries each action the dashboard offers — view a page, the four review actions (the worklist's Dash
callback, as the browser posts it), export (a download URL) and view the audit trail (its page and its CSV) — and
gets what :data:`pipeline.review.workflow.MATRIX` says, with exactly one audit row per attempted write (``ok`` or
``denied``). Managing users has no web endpoint (it is the command line's, ``python -m pipeline users``); the
service's test covers its cell.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import dash
import pytest
from sqlalchemy import func, select

from benchmarks.http_client import FAST_HASH, csrf_header, ensure_user, login
from pipeline.review.service import ItemKey, ReviewService
from pipeline.review.workflow import Action, Role, allowed
from pipeline.store.database import make_engine
from pipeline.store.review_schema import AuditEntry, ReviewItem, ReviewTime
from pipeline.store.schema import Configuration, Image
from tests.dashboard.conftest import PLAN, SeededStore
from tests.dashboard.http import call

PAGE = {"output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "changedPropIds": ["_pages_location.pathname"], "state": []}
BUTTON = {Action.START_REVIEW: "review-start", Action.DECIDE: "review-accept", Action.REOPEN: "review-reopen",
          Action.APPROVE: "review-approve"}


def page(client: Any, path: str, search: str = "") -> str:
    """The content Dash Pages renders for ``path`` and ``search`` (the callback the browser posts on navigation)."""
    body = {**PAGE, "inputs": [{"id": "_pages_location", "property": "pathname", "value": path},
                               {"id": "_pages_location", "property": "search", "value": search}]}
    response = client.post("/_dash-update-component", json=body, headers=csrf_header(client))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


class Items:
    """Review items no test has touched yet, and the service to put them in a state first."""

    def __init__(self, store: SeededStore) -> None:
        self.store = store
        self.engine = make_engine(store.url)
        self.service = ReviewService(self.engine, password_method=FAST_HASH)
        with self.engine.connect() as connection:
            images = list(connection.scalars(select(Image.id).order_by(Image.id)))
            configurations = list(connection.scalars(select(Configuration.id).order_by(Configuration.id)))
        self._candidates = itertools.product(images, configurations, (1, 2))

    def fresh(self) -> ItemKey:
        with self.engine.connect() as connection:
            for image, configuration, class_index in self._candidates:
                used = connection.scalar(select(func.count()).select_from(ReviewItem).where(
                    ReviewItem.image_id == image, ReviewItem.configuration_id == configuration,
                    ReviewItem.class_index == class_index))
                if not used:
                    return ItemKey(image, configuration, class_index)
        raise AssertionError("the seeded store ran out of review items")

    def audit_rows(self, actor: str) -> list[tuple[str, str]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(select(AuditEntry.action, AuditEntry.outcome).where(
                AuditEntry.actor == actor).order_by(AuditEntry.id))]

    def state(self, key: ItemKey) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(select(ReviewItem.state).where(
                ReviewItem.image_id == key.image_id, ReviewItem.configuration_id == key.configuration_id,
                ReviewItem.class_index == key.class_index))


@pytest.fixture
def items(store: SeededStore) -> Any:
    made = Items(store)
    yield made
    made.engine.dispose()


def _row(key: ItemKey, version: int = 0) -> dict[str, Any]:
    return {"image_id": key.image_id, "configuration_id": key.configuration_id, "class_index": key.class_index,
            "version": version}


def _prepared(items: Items, action: Action, actor_id: int, other_id: int) -> tuple[ItemKey, int]:
    """An item in the state ``action`` applies to (decide: in review by the actor, when the actor may review)."""
    key = items.fresh()
    service = items.service
    if action == Action.START_REVIEW:
        return key, 0
    reviewer = actor_id if action == Action.DECIDE and allowed(service.check(actor_id, Action.VIEW).role,
                                                               Action.DECIDE) else other_id
    info = service.start_review(reviewer, key)
    if action in (Action.REOPEN, Action.APPROVE):
        info = service.record_decision(reviewer, key, "accepted", None)
    return key, info.version


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_what_the_matrix_says_over_http(role: Role, store: SeededStore, items: Items,
                                                       dash_app: dash.Dash) -> None:
    name = f"{role.value}-{uuid.uuid4().hex[:8]}"
    user_id = ensure_user(store.url, name, role)
    other_id = ensure_user(store.url, f"prep-{uuid.uuid4().hex[:8]}", Role.REVIEWER)
    client = dash_app.server.test_client()
    assert login(client, name).status_code == 302
    assert client.get("/worklist").status_code == 200
    assert "worklist-cases" in page(client, "/worklist")
    scope = {"configuration": "Base", "kind": "fraction", "value": 0.02, "case": None, "case_only": False}

    for action, button in BUTTON.items():
        key, version = _prepared(items, action, user_id, other_id)
        before = items.state(key)
        rows_before = items.audit_rows(name)
        response = call(client, dash_app, "review-result.children", f"{button}.n_clicks", {
            f"{button}.n_clicks": 1, "review-items.selectedRows": [_row(key, version)],
            "review-comment.value": "", "review-scope.data": scope})
        assert response.status_code == 200, (role, action, response.get_data(as_text=True))
        result = str(response.get_json()["response"]["review-result"]["children"])
        new_rows = items.audit_rows(name)[len(rows_before):]
        assert new_rows == [(f"review.{action.value}", "ok" if allowed(role, action) else "denied")], (role, action)
        if allowed(role, action):
            assert "Refused" not in result and items.state(key) != before, (role, action, result)
        else:
            assert "Refused" in result and items.state(key) == before, (role, action, result)

    rows_before = items.audit_rows(name)
    response = client.get("/export/worklist.csv?configuration=Base&kind=fraction&value=0.02")
    can_export = allowed(role, Action.EXPORT)
    assert response.status_code == (200 if can_export else 403), role
    assert ("case_rank" in response.get_data(as_text=True)) is can_export
    assert items.audit_rows(name)[len(rows_before):] == [("export.worklist_csv", "ok" if can_export else "denied")]

    rows_before = items.audit_rows(name)
    can_audit = allowed(role, Action.VIEW_AUDIT)
    response = client.get("/export/audit.csv")
    assert response.status_code == (200 if can_audit else 403), role
    assert items.audit_rows(name)[len(rows_before):] == [("export.audit_csv", "ok" if can_audit else "denied")]
    audit_page = page(client, "/audit")
    assert ("audit-grid" in audit_page) is can_audit and ('"forbidden"' in audit_page) is not can_audit
    navbar = str(client.get("/_dash-layout").get_json())
    assert ("/audit" in navbar) is can_audit


def test_self_approval_is_refused_over_http(store: SeededStore, items: Items, dash_app: dash.Dash) -> None:
    name = f"approver-{uuid.uuid4().hex[:8]}"
    approver = ensure_user(store.url, name, Role.APPROVER)
    key = items.fresh()
    items.service.start_review(approver, key)
    info = items.service.record_decision(approver, key, "accepted", None)
    client = dash_app.server.test_client()
    login(client, name)
    scope = {"configuration": "Base", "kind": "fraction", "value": 0.02, "case": None, "case_only": False}
    response = call(client, dash_app, "review-result.children", "review-approve.n_clicks", {
        "review-approve.n_clicks": 1, "review-items.selectedRows": [_row(key, info.version)],
        "review-scope.data": scope})
    result = str(response.get_json()["response"]["review-result"]["children"])
    assert "may not approve it: a second user must" in result
    assert items.state(key) == "reviewed"
    assert items.audit_rows(name)[-1] == ("review.approve", "denied")


def test_a_stale_row_is_refused_and_bulk_actions_write_one_row_per_item(store: SeededStore, items: Items,
                                                                         dash_app: dash.Dash) -> None:
    name = f"reviewer-{uuid.uuid4().hex[:8]}"
    reviewer = ensure_user(store.url, name, Role.REVIEWER)
    client = dash_app.server.test_client()
    login(client, name)
    scope = {"configuration": "Base", "kind": "fraction", "value": 0.02, "case": None, "case_only": False}
    key = items.fresh()
    items.service.start_review(reviewer, key)  # version 1; the page still shows version 0 (pending)
    stale = call(client, dash_app, "review-result.children", "review-accept.n_clicks", {
        "review-accept.n_clicks": 1, "review-items.selectedRows": [{**_row(key), "version": 0}],
        "review-scope.data": scope})
    assert items.state(key) == "in_review"
    keys = [items.fresh() for _ in range(3)]
    before = len(items.audit_rows(name))
    bulk = call(client, dash_app, "review-result.children", "review-start.n_clicks", {
        "review-start.n_clicks": 1, "review-items.selectedRows": [_row(k) for k in keys], "review-scope.data": scope})
    assert "3 item(s) now in_review" in str(bulk.get_json()["response"]["review-result"]["children"])
    assert items.audit_rows(name)[before:] == [("review.start_review", "ok")] * 3
    assert "Refused" in str(stale.get_json()["response"]["review-result"]["children"])
    rejected = call(client, dash_app, "review-result.children", "review-rejected.n_clicks", {
        "review-rejected.n_clicks": 1, "review-items.selectedRows": [_row(k, 1) for k in keys],
        "review-comment.value": "", "review-scope.data": scope})
    assert "needs a comment" in str(rejected.get_json()["response"]["review-result"]["children"])
    assert {items.state(k) for k in keys} == {"in_review"}


def test_malformed_worklist_addresses_explain_themselves(store: SeededStore, dash_app: dash.Dash) -> None:
    client = dash_app.server.test_client()
    ensure_user(store.url)
    login(client)
    for search, reason in (("?budget=9", "between 0 and 5"), ("?budget=abc", "give a budget in percent"),
                           ("?minutes=-1", "give a budget in percent"), ("?configuration=Nope", "'Nope'")):
        content = page(client, "/worklist", search)
        assert '"not-found"' in content and reason in content, search
    timed = page(client, "/worklist", "?configuration=DE&minutes=2")
    assert "DE at 2 min per patient" in timed and "worklist-cases" in timed


def test_a_forged_callback_gets_a_user_error_not_a_server_error(store: SeededStore, dash_app: dash.Dash) -> None:
    """A slice past the end of the volume is the caller's mistake: the one web handler answers 400 with the reason
    (not 500), and a well-formed call of the same callback still draws."""
    ensure_user(store.url, "forger", Role.VIEWER)
    client = dash_app.server.test_client()
    assert login(client, "forger").status_code == 302
    values = {"viewer-case.data": store.seeded.map_cases[0], "viewer-a.value": store.seeded.configurations["DE"],
              "slice-coronal.data": 0, "slice-sagittal.data": 0, "viewer-wl.value": "1",
              "viewer-overlays.value": ["entropy"], "viewer-budget.value": PLAN.budget}
    forged = call(client, dash_app, "view-a-axial.figure", "slice-axial.data", {**values, "slice-axial.data": 10**6})
    assert forged.status_code == 400, forged.get_data(as_text=True)
    assert "axial slice 1000000 is outside" in forged.get_json()["error"]
    fine = call(client, dash_app, "view-a-axial.figure", "slice-axial.data", {**values, "slice-axial.data": 1})
    assert fine.status_code == 200


def test_activity_reports_only_credit_the_reporters_own_clocks_over_http(store: SeededStore, items: Items,
                                                                         dash_app: dash.Dash) -> None:
    """The review panel's activity callback as the browser posts it: a forged region clock of another user gets no
    time and one ``denied`` row; the reporter's own item clock is credited; a viewer's page reports nothing."""
    names = {role: f"{role}-{uuid.uuid4().hex[:8]}" for role in ("rita", "rob", "vera")}
    rita = ensure_user(store.url, names["rita"], Role.REVIEWER)
    rob = ensure_user(store.url, names["rob"], Role.REVIEWER)
    ensure_user(store.url, names["vera"], Role.VIEWER)
    mine, theirs = items.fresh(), items.fresh()
    items.service.start_review(rita, mine, flagged_ml=1.0)
    robs = items.service.open_region(rob, theirs.image_id, theirs.configuration_id, theirs.class_index, rank=1,
                                     budget=0.02, flagged_ml=1.0)
    scope = {"configuration": "Base", "kind": "fraction", "value": 0.02, "case": None, "case_only": False}
    report = {"review-activity.data": {"tick": 1, "active": True}, "review-scope.data": scope}

    def seconds() -> dict[int | None, float]:
        with items.engine.connect() as connection:
            return dict(connection.execute(select(ReviewTime.region_rank, ReviewTime.seconds).where(
                ReviewTime.user_id.in_((rita, rob)))).all())

    client = dash_app.server.test_client()
    login(client, names["rita"])
    before = len(items.audit_rows(names["rita"]))
    forged = call(client, dash_app, "review-region.data", "review-activity.data",
                  {**report, "review-region.data": {"rank": 1, "budget": 0.02, "clock": robs}})
    assert forged.get_json()["response"] == {} and seconds()[1] == 0.0, "nothing changes on the page or in the store"
    assert items.audit_rows(names["rita"])[before:] == [("review.time", "denied")]
    own = call(client, dash_app, "review-region.data", "review-activity.data", {**report, "review-region.data": None})
    assert own.get_json()["response"] == {} and seconds()[None] > 0, "rita's own item clock is credited"

    viewer = dash_app.server.test_client()
    login(viewer, names["vera"])
    before = len(items.audit_rows(names["vera"]))
    assert call(viewer, dash_app, "review-region.data", "review-activity.data",
                {**report, "review-region.data": None}).get_json()["response"] == {}
    assert items.audit_rows(names["vera"])[before:] == [], "a viewer's report is neither recorded nor refused"
