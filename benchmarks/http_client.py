"""Signing in to the dashboard and calling it as the command line and a browser would, for the benchmarks and tests.

:func:`ensure_user` creates an account through the audited review service (as ``python -m pipeline users add``
does); :func:`login` signs a Flask test client in through the login form; :func:`csrf_header` is the header Dash's
renderer sends with every callback; :func:`callback_body` is the JSON it posts to ``/_dash-update-component``.
:class:`Browser` does the same over HTTP against a served app (gunicorn, the dev server): one signed-in user.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import requests

from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.workflow import Role
from pipeline.store.database import make_engine

FAST_HASH = "scrypt:1024:8:1"  # benchmarks and tests only: the production default is werkzeug's scrypt (n = 32768)
ADMIN = "qa-admin"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CALLBACK = "/_dash-update-component"
Prop = tuple[str, str]
Value = tuple[str, str, Any]


def ensure_user(url: str, username: str = ADMIN, role: Role | str = Role.ADMIN, password: str = PASSWORD) -> int:
    """The id of account ``username`` in the store at ``url``, created by the command line when missing."""
    engine = make_engine(url)
    try:
        service = ReviewService(engine, password_method=FAST_HASH)
        existing = {u.username: u.id for u in service.list_users(CommandLine("tester"))}
        if username in existing:
            return existing[username]
        return service.create_user(CommandLine("tester"), username, password, role).id
    finally:
        engine.dispose()


def csrf_token(client: Any) -> str:
    """The CSRF token of the login form the client's session gets."""
    match = CSRF.search(client.get("/login").get_data(as_text=True))
    if match is None:
        raise RuntimeError("the login page has no CSRF token")
    return match.group(1)


def login(client: Any, username: str = ADMIN, password: str = PASSWORD) -> Any:
    """Sign a Flask test client in through the login form; the POST's response."""
    return client.post("/login", data={"csrf_token": csrf_token(client), "username": username,
                                       "password": password, "next": "/"})


def csrf_header(client: Any) -> dict[str, str]:
    """The ``X-CSRFToken`` header Dash's renderer sends (from the ``_csrf_token`` cookie), when the session has one."""
    cookie = client.get_cookie("_csrf_token")
    return {"X-CSRFToken": cookie.value} if cookie is not None else {}


def callback_body(outputs: Sequence[Prop], inputs: Sequence[Value], state: Sequence[Value] = (),
                  changed: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON Dash's renderer posts to call the callback of ``outputs`` (id, property) with ``inputs`` and
    ``state`` (id, property, value), ``changed`` naming the inputs that fired it (``"id.property"``)."""
    single = len(outputs) == 1
    return {
        "output": f"{outputs[0][0]}.{outputs[0][1]}" if single
        else ".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..",
        "outputs": {"id": outputs[0][0], "property": outputs[0][1]} if single
        else [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": list(changed),
    }


def page_body(path: str, search: str = "") -> dict[str, Any]:
    """The body of Dash Pages' routing callback: the layout of the page at ``path``, as a browser opening it."""
    return callback_body([("_pages_content", "children"), ("_pages_store", "data")],
                         [("_pages_location", "pathname", path), ("_pages_location", "search", search)],
                         changed=["_pages_location.pathname"])


class Browser:
    """One user of a served app at ``base`` (``http://host:port``), signed in through the login form."""

    def __init__(self, base: str, username: str = ADMIN, password: str = PASSWORD, timeout: float = 60) -> None:
        self.base, self.timeout = base, timeout
        self.http = requests.Session()
        form = self.http.get(f"{base}/login", timeout=timeout)
        match = CSRF.search(form.text)
        if match is None:
            raise RuntimeError(f"the login page of {base} has no CSRF token ({form.status_code})")
        signed_in = self.http.post(f"{base}/login", allow_redirects=False, timeout=timeout, data={
            "csrf_token": match.group(1), "username": username, "password": password, "next": "/"})
        if signed_in.status_code != 302:
            raise RuntimeError(f"{username} could not sign in to {base} ({signed_in.status_code})")
        self.http.get(f"{base}/", timeout=timeout)  # the app shell sets the CSRF cookie Dash's renderer sends

    def post(self, body: dict[str, Any]) -> requests.Response:
        """Call a callback as the renderer does (with the CSRF header from the session's cookie)."""
        headers = {"X-CSRFToken": self.http.cookies.get("_csrf_token", "")}
        return self.http.post(self.base + CALLBACK, json=body, headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self.http.close()
