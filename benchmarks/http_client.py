"""Signing in to the dashboard as the command line and a browser would, for the benchmarks and the tests.

:func:`ensure_user` creates an account through the audited review service (as ``python -m pipeline users add``
does); :func:`login` signs a Flask test client in through the login form; :func:`csrf_header` is the header Dash's
renderer sends with every callback.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.review.service import CommandLine, ReviewService
from pipeline.review.workflow import Role
from pipeline.store.database import make_engine

FAST_HASH = "scrypt:1024:8:1"  # benchmarks and tests only: the production default is werkzeug's scrypt (n = 32768)
ADMIN = "qa-admin"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


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
