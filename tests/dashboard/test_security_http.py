"""Issue 17's attacks as raw HTTP against the app served on loopback (127.0.0.1 only), on the seeded SQLite store:
100 wrong logins 50 at a time check the password 5 times; every response carries the security headers and no
version; static routes answer 404, not 500, and nothing of Dash reaches a browser without a session; a Host header
that is not a host is a 400; a login's ``next`` never leaves the app, whatever its bytes."""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import dash
import pytest
from werkzeug.serving import make_server

from benchmarks.http_client import PASSWORD, ensure_user
from pipeline.review import accounts
from pipeline.review.throttle import PAIR_FREE
from pipeline.settings import Settings
from qa_dashboard.security import STATIC_HEADERS, QuietRequestHandler
from tests.dashboard.conftest import SeededStore

LOOPBACK = "127.0.0.1"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def port(dash_app: dash.Dash, sqlite_store: SeededStore, configure_app: Callable[..., Settings]) -> Iterator[int]:
    """The app on a free loopback port, with the development server's request handler as ``python app.py`` uses."""
    configure_app(database_url=sqlite_store.url, artifacts_dir=sqlite_store.root)
    server = make_server(LOOPBACK, 0, dash_app.server, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


def raw(port: int, method: str, path: str, headers: dict[str, str] | None = None,
        body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request exactly as given (path and headers unchecked by a client library)."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {"Host": f"{LOOPBACK}:{port}", **(headers or {})}.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _form(port: int) -> tuple[str, str]:
    """A fresh browser's login form: its session cookie and CSRF token."""
    _, headers, body = raw(port, "GET", "/login")
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    found = TOKEN.search(body.decode())
    assert found is not None
    return cookie, found.group(1)


def _login(port: int, username: str, password: str, next_path: str = "/") -> tuple[int, http.client.HTTPMessage]:
    cookie, token = _form(port)
    body = urlencode({"csrf_token": token, "username": username, "password": password, "next": next_path}).encode()
    status, headers, _ = raw(port, "POST", "/login", {"Cookie": cookie,
                                                      "Content-Type": "application/x-www-form-urlencoded"}, body)
    return status, headers


def test_a_hundred_wrong_logins_fifty_at_a_time_check_the_password_five_times(
        port: int, sqlite_store: SeededStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_user(sqlite_store.url, "burst-target", "reviewer")
    checked: list[Any] = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda *a: checked.append(1) or real(*a))
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: _login(port, "burst-target", "a wrong password")[0], range(100)))
    assert (statuses.count(401), statuses.count(429), len(checked)) == (PAIR_FREE, 100 - PAIR_FREE, PAIR_FREE)


@pytest.mark.parametrize("path", ["/login", "/assets/bootstrap.min.css", "/", "/_dash-layout", "/no/such/page",
                                  "/assets/", "/favicon.ico", "/_favicon.ico", "/_dash-component-suites/..",
                                  "/_dash-component-suites/dash/../../app.py", "/_dash-component-suites/%2e%2e/x",
                                  "/assets/../app.py", "/_dash-component-suites/dash/dash-renderer/build/x.js"])
def test_every_response_has_the_headers_and_no_version_and_static_routes_never_fail(port: int, path: str) -> None:
    status, headers, body = raw(port, "GET", path)
    assert status in (200, 302, 401, 404), (path, status)
    for name, value in STATIC_HEADERS.items():
        assert headers[name] == value, (path, name)
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    assert headers["Server"] == "qa-dashboard"
    text = body.decode("latin-1")
    assert not re.search(r"v\d+_\d+_\d+|Werkzeug|Python/3|dash_renderer", text), (path, text[:300])
    if path.startswith(("/assets/", "/_dash-component-suites/", "/favicon")) and path != "/assets/bootstrap.min.css":
        assert status in (401, 404), (path, status)


def test_a_host_header_that_is_no_host_is_refused(port: int) -> None:
    for host in ("evil host", "a/b", "x" * 300, ""):
        assert raw(port, "GET", "/login", {"Host": host})[0] == 400, host
    assert raw(port, "GET", "/login", {"Host": "[::1]:8050"})[0] == 200


@pytest.mark.parametrize("target", ["/\t/evil.example/phish", "/\r\nX-Injected: 1", "//evil", "/\\evil", "/\x00x",
                                    "/ok /evil", "/%09/evil.example/phish", "/%0d%0aSet-Cookie:%20a=b"])
def test_a_login_redirects_inside_the_app_whatever_next_holds(port: int, sqlite_store: SeededStore,
                                                              target: str) -> None:
    ensure_user(sqlite_store.url, "redirected", "viewer")
    status, headers = _login(port, "redirected", PASSWORD, target)
    location = headers["Location"]
    assert status == 302 and "X-Injected" not in headers and "a=b" not in headers.get("Set-Cookie", "")
    if re.fullmatch(r"/(?![/\\])[!-~]*", target):  # a path of this app, percent-encoded bytes and all
        assert location == target
    else:  # a control character, a space, a backslash or a second slash: home instead
        assert location == "/", location
    query = urlencode({"next": target})
    assert raw(port, "GET", f"/login?{query}")[0] == 200


def test_the_checks_run_after_dash_registers_its_files_and_around_the_login_guard(dash_app: dash.Dash) -> None:
    """A worker's first request may be a script: Dash's setup (which registers the suites' files) runs first, then
    the request checks, the login guard and the body checks."""
    names = [getattr(f, "__qualname__", "") for f in dash_app.server.before_request_funcs[None]]
    order = [names.index(n) for n in ("Dash._setup_server", "_Hardening.check_request", "guard",
                                      "_Hardening.check_body")]
    assert order == sorted(order)
