"""Login in front of the dashboard, through the real Flask endpoints on each backend: every page redirects to the
login form and every callback answers 401 without data until a user signs in; a wrong password stays on the form
with one audit row; the form needs its CSRF token; every POST of a signed-in session needs it too (header or form
field, 403 otherwise); logout is a POST with the token, audited; five failures lock the account."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dash
import flask
import pytest
from alembic import command
from sqlalchemy import select

from benchmarks.http_client import PASSWORD, csrf_token, ensure_user, login
from pipeline.settings import Settings
from pipeline.store.database import alembic_config, make_engine
from pipeline.store.review_schema import AuditEntry
from qa_dashboard import auth, config
from qa_dashboard.auth import CREATE_USER_HINT
from tests.dashboard.conftest import SeededStore

PAGES = ["/", "/cohort", "/compare", "/runs", "/patient/phantom_9000", "/patient/phantom_9000?at=1,2,3",
         "/no/such/page"]
CALLBACK = {"output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/runs"},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}


@pytest.fixture
def client(dash_app: dash.Dash) -> Any:
    return dash_app.server.test_client()


def _user(store: SeededStore, role: str = "viewer") -> str:
    name = f"u-{uuid.uuid4().hex[:10]}"
    ensure_user(store.url, name, role)
    return name


def _logins(store: SeededStore, username: str, action: str = "login") -> list[str]:
    engine = make_engine(store.url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(AuditEntry.outcome).where(
                AuditEntry.action == action, AuditEntry.actor == username).order_by(AuditEntry.id)))
    finally:
        engine.dispose()


def _session_token(client: Any) -> str:
    """The signed-in session's CSRF token, read from the ``_csrf_token`` cookie as Dash's renderer reads it."""
    cookie = client.get_cookie(auth.CSRF_COOKIE)
    assert cookie is not None, "no _csrf_token cookie"
    return str(cookie.value)


def _logout(client: Any) -> Any:
    """Log out the way the navbar's form does."""
    return client.post("/logout", data={"csrf_token": _session_token(client)})


def test_every_page_redirects_and_every_callback_is_refused_without_a_session(store: SeededStore,
                                                                             client: Any) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path
    for path in ("/_dash-layout", "/_dash-dependencies", "/_reload-hash"):
        response = client.get(path)
        assert response.status_code == 401 and response.get_json() == {"error": "authentication required",
                                                                        "login": "/login"}, path
    response = client.post("/_dash-update-component", json=CALLBACK)
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "runs-grid" not in body and "response" not in body and "not a medical device" not in body
    assert client.get("/assets/bootstrap.min.css").status_code == 200
    login_page = client.get("/login")
    assert login_page.status_code == 200 and 'name="csrf_token"' in login_page.get_data(as_text=True)


def test_login_opens_the_pages_and_logout_closes_them(store: SeededStore, client: Any) -> None:
    name = _user(store, "reviewer")
    response = login(client, name)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    session_cookie, csrf_cookie = cookies["qa_session"], cookies[auth.CSRF_COOKIE]
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Secure" not in session_cookie
    assert "HttpOnly" not in csrf_cookie and "SameSite=Lax" in csrf_cookie and "Secure" not in csrf_cookie
    token = _session_token(client)
    with client.session_transaction() as session:
        assert session["csrf"] == token and session["username"] == name
    for path in PAGES:
        assert client.get(path).status_code == 200, path
    layout = str(client.get("/_dash-layout").get_json())
    assert name in layout and "reviewer" in layout and "/logout" in layout and token in layout
    answer = client.post("/_dash-update-component", json=CALLBACK, headers={"X-CSRFToken": token})
    assert answer.status_code == 200 and "runs-grid" in answer.get_data(as_text=True)
    assert _logins(store, name) == ["ok"]
    assert client.get("/logout").status_code == 405  # a link or an <img> cannot log anyone out
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/").status_code == 200 and _logins(store, name, "logout") == []
    response = _logout(client)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get_cookie(auth.CSRF_COOKIE) is None
    assert _logins(store, name, "logout") == ["ok"]
    assert client.get("/").status_code == 302
    assert client.post("/_dash-update-component", json=CALLBACK, headers={"X-CSRFToken": token}).status_code == 401
    assert client.post("/logout").status_code == 302  # nobody signed in: nothing to end, nothing audited
    assert _logins(store, name, "logout") == ["ok"]


def test_a_signed_in_callback_without_the_csrf_token_is_refused(store: SeededStore, client: Any) -> None:
    name = _user(store)
    login(client, name)
    token = _session_token(client)
    other = client.application.test_client()
    login(other, name)
    assert _session_token(other) != token  # every login gets its own token
    for headers in ({}, {"X-CSRFToken": ""}, {"X-CSRFToken": "forged"}, {"X-CSRFToken": _session_token(other)},
                    {"X-CSRFToken": "\u00e9t\u00e9"}):
        response = client.post("/_dash-update-component", json=CALLBACK, headers=headers)
        body = response.get_data(as_text=True)
        assert response.status_code == 403 and "CSRF token missing or wrong" in body, headers
        assert "runs-grid" not in body and "response" not in body
    assert client.post("/_dash-update-component", json=CALLBACK, headers={"X-CSRFToken": token}).status_code == 200
    client.delete_cookie(auth.CSRF_COOKIE)  # a lost cookie comes back with the next response
    client.get("/")
    assert _session_token(client) == token


def test_any_other_post_route_needs_the_token_in_a_header_or_form_field(store: SeededStore, client: Any) -> None:
    server = flask.Flask("probe")
    auth.install(server, config.settings())
    server.add_url_rule("/probe", "probe", lambda: "done", methods=["POST"])
    probe = server.test_client()
    assert probe.post("/probe").status_code == 401
    login(probe, _user(store))
    token = _session_token(probe)
    assert probe.post("/probe").status_code == 403
    assert probe.post("/probe", data={"csrf_token": "forged"}).status_code == 403
    assert probe.post("/probe", data={"csrf_token": token}).get_data(as_text=True) == "done"
    assert probe.post("/probe", headers={"X-CSRFToken": token}).get_data(as_text=True) == "done"
    with server.test_request_context("/"):
        flask.session["csrf"] = token
        assert auth.csrf_token() == token  # what a page embeds in its forms


def test_after_login_the_user_goes_back_to_the_page_asked_for_but_never_off_site(store: SeededStore,
                                                                                client: Any) -> None:
    name = _user(store)
    for target, expected in (("/runs?x=1", "/runs?x=1"), ("//evil.example/", "/"), ("https://evil.example", "/"),
                             ("/\\evil.example", "/")):
        if client.get_cookie(auth.CSRF_COOKIE) is not None:
            assert _logout(client).status_code == 302
        response = client.post("/login", data={"csrf_token": csrf_token(client), "username": name,
                                                "password": PASSWORD, "next": target})
        assert response.headers["Location"] == expected, target


def test_a_wrong_password_stays_on_the_form_with_one_failure_row(store: SeededStore, client: Any) -> None:
    name = _user(store)
    response = login(client, name, "not the password at all")
    text = response.get_data(as_text=True)
    assert response.status_code == 401 and "invalid username or password" in text and 'id="login-form"' in text
    assert _logins(store, name) == ["failure"]
    assert client.get("/").status_code == 302
    unknown = login(client, "nobody-" + uuid.uuid4().hex[:6], PASSWORD)
    assert unknown.status_code == 401 and "invalid username or password" in unknown.get_data(as_text=True)


def test_the_form_needs_its_csrf_token(store: SeededStore, client: Any) -> None:
    name = _user(store)
    csrf_token(client)
    assert client.post("/login", data={"username": name, "password": PASSWORD}).status_code == 400
    assert client.post("/login", data={"username": name, "password": PASSWORD,
                                       "csrf_token": "forged"}).status_code == 400
    assert _logins(store, name) == []
    fresh = client.application.test_client()  # a session that never fetched the form has no token to match
    assert fresh.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": ""}).status_code == 400


def test_five_failures_lock_the_account(store: SeededStore, client: Any) -> None:
    name = _user(store)
    for _ in range(5):
        assert login(client, name, "wrong password, wrong").status_code == 401
    response = login(client, name)  # the right password, but locked
    assert response.status_code == 429 and "too many failed logins" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert _logins(store, name) == ["failure"] * 5 + ["locked"]


def test_the_login_page_explains_a_store_without_users_or_not_ready(
        client: Any, tmp_path: Path, configure_app: Callable[..., Settings]) -> None:
    missing = tmp_path / "nowhere" / "qa.sqlite3"
    configure_app(database_url=f"sqlite:///{missing}")
    text = client.get("/login").get_data(as_text=True)
    assert "store-not-ready" in text and "python -m pipeline migrate" in text and not missing.exists()
    assert client.get("/").status_code == 302
    behind = f"sqlite:///{tmp_path / 'behind.sqlite3'}"
    command.upgrade(alembic_config(behind), "0001")
    configure_app(database_url=behind)
    text = client.get("/login").get_data(as_text=True)
    assert "store-not-ready" in text and "at revision 0001" in text
    with client.session_transaction() as session:  # the form is not shown: post with the session's own token
        session["csrf"] = "token"
    response = client.post("/login", data={"csrf_token": "token", "username": "x", "password": "y"})
    assert response.status_code == 503 and "store-not-ready" in response.get_data(as_text=True)
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    command.upgrade(alembic_config(empty), "head")
    configure_app(database_url=empty)
    text = client.get("/login").get_data(as_text=True)
    assert 'id="no-users"' in text and CREATE_USER_HINT in text and 'id="login-form"' in text


def test_secure_cookies_follow_the_environment(tmp_path: Path) -> None:
    import flask

    from qa_dashboard import auth

    settings = Settings.from_env({"QA_SECURE_COOKIES": "1", "QA_SECRET_KEY": "k" * 40}, cwd=tmp_path)
    server = flask.Flask("probe")
    auth.install(server, settings)
    assert server.config["SESSION_COOKIE_SECURE"] is True and server.secret_key == "k" * 40
    assert server.config["SESSION_COOKIE_HTTPONLY"] is True and server.config["SESSION_COOKIE_SAMESITE"] == "Lax"
