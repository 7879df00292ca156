"""Issue 17's web attacks replayed against the real app through Flask's test client, on SQLite and PostgreSQL:
sessions end for good (logout, account changes, timeouts, the sessions page) and an old cookie opens nothing;
logins are throttled per client and unlocked by an administrator; a login redirects only inside the app; forged
callbacks get a 400 (a 413 for a body too large), change nothing and are audited once; the cohort CSV is an audited
export for reviewers. (Raw HTTP on loopback: ``test_security_http.py``; the browser: ``test_security_browser.py``.)"""

from __future__ import annotations

import io
import uuid
from typing import Any

import dash
import pytest
from sqlalchemy import func, select, text

from benchmarks.http_client import PASSWORD, csrf_header, csrf_token, ensure_user, login
from pipeline.cli import main
from pipeline.review.workflow import Role
from pipeline.store.database import make_engine, session_factory
from pipeline.store.review_schema import AuditEntry, ReviewItem
from qa_dashboard import auth, config
from tests.dashboard.conftest import PLAN, SeededStore
from tests.dashboard.http import call
from tests.dashboard.test_permissions import Items, page

SCOPE = {"configuration": "Base", "kind": "fraction", "value": 0.02, "case": None, "case_only": False}
WORKLIST_CSV = "/export/worklist.csv?configuration=Base&kind=fraction&value=0.02"


def _user(store: SeededStore, role: Role = Role.REVIEWER) -> str:
    name = f"{role.value}-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, role)
    return name


def _signed_in(app: dash.Dash, name: str, address: str = "127.0.0.1") -> Any:
    client = app.server.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    assert login(client, name).status_code == 302
    return client


def _rows(store: SeededStore, actor: str, action: str | None = None) -> list[tuple[str, str]]:
    engine = make_engine(store.url)
    try:
        with engine.connect() as connection:
            query = select(AuditEntry.action, AuditEntry.outcome).where(AuditEntry.actor == actor)
            if action is not None:
                query = query.where(AuditEntry.action == action)
            return [tuple(r) for r in connection.execute(query.order_by(AuditEntry.id))]
    finally:
        engine.dispose()


def _owner_sql(store: SeededStore, statement: str, **params: Any) -> None:
    engine = make_engine(store.url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), params)
    finally:
        engine.dispose()


def _cookies(client: Any) -> dict[str, str]:
    """The session and CSRF cookies of ``client`` (what an attacker who copied them has)."""
    return {name: client.get_cookie(name).value for name in ("qa_session", auth.CSRF_COOKIE)}


def _replay(app: dash.Dash, cookies: dict[str, str]) -> Any:
    """A fresh client sending ``cookies`` (and the CSRF header from them, as Dash's renderer would)."""
    copy = app.server.test_client()
    for name, value in cookies.items():
        copy.set_cookie(name, value)
    return copy


def _act(app: dash.Dash, client: Any, key: Any) -> Any:
    return call(client, app, "review-result.children", "review-start.n_clicks", {
        "review-start.n_clicks": 1, "review-items.selectedRows": [
            {"image_id": key.image_id, "configuration_id": key.configuration_id, "class_index": key.class_index,
             "version": 0}], "review-scope.data": SCOPE})


def test_logout_ends_every_session_and_an_old_cookie_opens_nothing(store: SeededStore, dash_app: dash.Dash) -> None:
    name = _user(store)
    client, elsewhere = _signed_in(dash_app, name), _signed_in(dash_app, name, "10.2.0.1")
    stolen = _cookies(client)
    assert _replay(dash_app, stolen).get(WORKLIST_CSV).status_code == 200  # a copy works while the session lives
    assert client.post("/logout", data={"csrf_token": csrf_header(client)["X-CSRFToken"]}).status_code == 302
    items = Items(store)
    try:
        key = items.fresh()
        for replayed in (_replay(dash_app, stolen), elsewhere):
            assert replayed.get("/").status_code == 302
            download = replayed.get(WORKLIST_CSV)
            assert download.status_code == 302 and b"case_rank" not in download.data
            assert _act(dash_app, replayed, key).status_code == 401
        assert items.state(key) is None and ("review.start_review", "ok") not in _rows(store, name)
    finally:
        items.engine.dispose()
    assert _rows(store, name, "logout") == [("logout", "ok")]


@pytest.mark.parametrize("change", [["--role", "approver"], ["--deactivate"], ["--password"]])
def test_an_account_change_ends_its_sessions(store: SeededStore, dash_app: dash.Dash, change: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    name = _user(store)
    client = _signed_in(dash_app, name)
    assert client.get("/").status_code == 200
    monkeypatch.setattr("sys.stdin", io.StringIO("a brand new passphrase\n"))
    assert main(["users", "set", "--username", name, *change], config.settings()) == 0
    assert client.get("/").status_code == 302 and client.get_cookie(auth.CSRF_COOKIE) is None


def test_idle_and_expired_sessions_end(store: SeededStore, dash_app: dash.Dash) -> None:
    name = _user(store)
    for column, shift in (("last_seen_at", "idle"), ("expires_at", "expired")):
        client = _signed_in(dash_app, name)
        assert client.get("/").status_code == 200
        past = "datetime('now', '-1 day')" if store.backend == "sqlite" else "now() - interval '1 day'"
        _owner_sql(store, f"UPDATE user_sessions SET {column} = {past} WHERE revoked_at IS NULL AND user_id = "
                          "(SELECT id FROM users WHERE username = :name)", name=name)
        assert client.get("/").status_code == 302, shift
    assert _rows(store, name, "session.end") == [("session.end", "ok")] * 2


def test_the_sessions_page_ends_ones_own_sessions_and_an_admin_ends_anyones(store: SeededStore,
                                                                          dash_app: dash.Dash) -> None:
    name, admin = _user(store), _user(store, Role.ADMIN)
    client, laptop = _signed_in(dash_app, name), _signed_in(dash_app, name, "10.3.0.1")
    content = page(client, "/sessions")
    assert "this browser" in content and "10.3.0.1" in content and admin not in content
    engine = make_engine(store.url)
    with session_factory(engine)() as session:
        ids = list(session.scalars(text("SELECT s.id FROM user_sessions s JOIN users u ON u.id = s.user_id "
                                        "WHERE u.username = :n AND s.ip = '10.3.0.1'"), {"n": name}))
    engine.dispose()
    other = _signed_in(dash_app, _user(store))
    forged = call(other, dash_app, "sessions-result.children", "sessions-end.n_clicks", {
        "sessions-end.n_clicks": 1, "sessions-grid.selectedRows": [{"id": ids[0]}]})
    assert "Refused" in str(forged.get_json()["response"]) and laptop.get("/").status_code == 200
    ended = call(client, dash_app, "sessions-result.children", "sessions-end.n_clicks", {
        "sessions-end.n_clicks": 1, "sessions-grid.selectedRows": [{"id": ids[0]}]})
    assert "Ended 1 session(s)" in str(ended.get_json()["response"]) and laptop.get("/").status_code == 302
    assert client.get("/").status_code == 200
    admin_client = _signed_in(dash_app, admin)
    assert name in page(admin_client, "/sessions")
    mine = [r for r in _rows(store, name) if r[0] == "session.end"]
    assert mine == [("session.end", "ok")]


def test_logins_are_throttled_per_client_and_unlocked_by_an_admin(store: SeededStore, dash_app: dash.Dash) -> None:
    name = _user(store)
    attacker = dash_app.server.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.66.0.1"
    assert [login(attacker, name, "not the password").status_code for _ in range(5)] == [401] * 5
    locked = login(attacker, name)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert _signed_in(dash_app, name, "10.77.0.1").get("/").status_code == 200  # the user is not locked out
    assert main(["users", "set", "--username", name, "--unlock"], config.settings()) == 0
    assert login(attacker, name).status_code == 302


@pytest.mark.parametrize("target", ["/\t/evil.example/phish", "//evil.example", "/\\evil.example", "https://e.x",
                                    "/ok\r\nSet-Cookie: x=1", "/\n/evil.example", "javascript:alert(1)", "/" * 3000])
def test_a_login_never_sends_the_browser_off_the_app(store: SeededStore, dash_app: dash.Dash, target: str) -> None:
    name = _user(store)
    client = dash_app.server.test_client()
    assert client.get("/login", query_string={"next": target}).status_code == 200
    answer = client.post("/login", data={"csrf_token": csrf_token(client), "username": name, "password": PASSWORD,
                                         "next": target})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert client.post("/login", data={"csrf_token": csrf_token(client), "username": name, "password": PASSWORD,
                                       "next": "/runs?x=1"}).headers["Location"] == "/runs?x=1"


def _viewer_values(store: SeededStore, **changes: Any) -> dict[str, Any]:
    return {"viewer-case.data": store.seeded.map_cases[0], "viewer-a.value": store.seeded.configurations["DE"],
            "slice-axial.data": 1, "slice-coronal.data": 0, "slice-sagittal.data": 0, "viewer-wl.value": "1",
            "viewer-overlays.value": ["entropy"], "viewer-opacity.value": 0.6, "viewer-threshold.value": 0.1,
            "viewer-budget.value": PLAN.budget, **changes}


def test_forged_callbacks_get_400_change_nothing_and_are_audited_once(store: SeededStore,
                                                                      dash_app: dash.Dash) -> None:
    name = _user(store)
    client = _signed_in(dash_app, name)
    forged = {"slice -1": {"slice-axial.data": -1}, "slice past the end": {"slice-axial.data": PLAN.map_shape[0]},
              "opacity nan": {"viewer-opacity.value": "nan"}, "opacity -5": {"viewer-opacity.value": -5},
              "budget 2": {"viewer-budget.value": 2}, "overlay": {"viewer-overlays.value": ["<script>"]},
              "measurement": {"viewer-measurements.data": [{"tool": "<script>", "points": [[0, 0], [1, 1]]}]}}
    for what, change in forged.items():
        before = len(_rows(store, name))
        answer = call(client, dash_app, "view-a-axial.figure", "slice-axial.data", _viewer_values(store, **change))
        assert answer.status_code == 400 and "error" in answer.get_json(), what
        assert _rows(store, name)[before:] == [("request.refused", "denied")], what
    assert call(client, dash_app, "view-a-axial.figure", "slice-axial.data", _viewer_values(store)).status_code == 200
    items = Items(store)
    try:
        key = items.fresh()
        rows = [{"image_id": 2**70, "configuration_id": key.configuration_id, "class_index": 1, "version": 0}]
        for values, status in (({"review-items.selectedRows": rows}, 400),
                               ({"review-items.selectedRows": [{**rows[0], "image_id": key.image_id}],
                                 "review-comment.value": "x" * 100_000}, 400),
                               ({"review-items.selectedRows": [{**rows[0], "image_id": key.image_id}],
                                 "review-comment.value": "x" * 5_000_000}, 413)):
            before = len(_rows(store, name))
            answer = call(client, dash_app, "review-result.children", "review-start.n_clicks",
                          {"review-start.n_clicks": 1, "review-scope.data": SCOPE, **values})
            assert answer.status_code == status
            assert _rows(store, name)[before:] == [("request.refused", "denied")]
        assert items.state(key) is None
        with items.engine.connect() as connection:
            assert (connection.scalar(select(func.max(func.length(ReviewItem.comment)))) or 0) <= 2000
    finally:
        items.engine.dispose()
    assert '"not-found"' in page(client, "/patient/" + store.seeded.map_cases[0], "?at=" + "9" * 5000)


@pytest.mark.parametrize("body", [[], {"output": "nope..x"}, {"output": "view-a-axial.figure"}, "x",
                                  {"output": "unreviewed-badge.children", "inputs": [{"id": "a", "property": "b"}]},
                                  {"output": "unreviewed-badge.children", "changedPropIds": ["review-start.n_clicks"],
                                   "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/"}]}])
def test_malformed_callback_requests_are_400(store: SeededStore, dash_app: dash.Dash, body: Any) -> None:
    name = _user(store)
    client = _signed_in(dash_app, name)
    answer = client.post("/_dash-update-component", json=body, headers=csrf_header(client))
    assert answer.status_code == 400 and _rows(store, name)[-1] == ("request.refused", "denied")


def test_the_cohort_csv_is_an_audited_export_for_reviewers(store: SeededStore, dash_app: dash.Dash) -> None:
    address = f"/export/cohort.csv?protocol={store.seeded.protocol_id}&repeat=0&structure=all+foreground"
    viewer, reviewer = _user(store, Role.VIEWER), _user(store, Role.REVIEWER)
    refused = _signed_in(dash_app, viewer).get(address)
    assert refused.status_code == 403 and b"configuration" not in refused.data
    assert _rows(store, viewer, "export.cohort_csv") == [("export.cohort_csv", "denied")]
    served = _signed_in(dash_app, reviewer).get(address)
    assert served.status_code == 200 and served.data.startswith(b"configuration,structure,dsc_mean")
    assert _rows(store, reviewer, "export.cohort_csv") == [("export.cohort_csv", "ok")]
    assert '"disabled":true' in page(_signed_in(dash_app, viewer), "/cohort").replace(" ", "")
