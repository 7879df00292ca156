"""The login form (server-rendered), single sign-on and logout: the routes :func:`qa_dashboard.auth.install` adds.

A login checks the password with :meth:`~pipeline.review.service.ReviewService.authenticate` (throttled: 429 with
``Retry-After`` while this client or account must wait) and starts a server-side session; the browser then goes to
the page it asked for, when that is a path of this app (:func:`qa_dashboard.security.safe_next`), else to ``/``.
``/logout`` (POST with the session's CSRF token; GET is 405, so a link cannot log anyone out) ends every session of
the user and audits it.
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import StoreNotReadyError
from pipeline.review.service import AccountLockedError, AuthenticationError
from pipeline.settings import OidcSettings
from pipeline.store.review_schema import User
from qa_dashboard import oidc
from qa_dashboard.auth import authenticated, client_ip, csrf_sent_matches, csrf_token, review_service, start_session
from qa_dashboard.config import settings
from qa_dashboard.security import safe_next
from qa_dashboard.store import MIGRATE_HINT, get_store

log = logging.getLogger(__name__)

CREATE_USER_HINT = "python -m pipeline users add --username U --role admin"
MAX_USERNAME_CHARS = 200  # longer is no username (64 at most); the form shows what was typed, cut

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Uncertainty QA</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/bootstrap.min.css"></head>
<body class="bg-light"><main class="container" style="max-width: 28rem; margin-top: 8vh">
<h1 class="h4 mb-3">Budget-aware uncertainty QA</h1>
<p><span class="badge text-bg-warning">Research and QA support software, not a medical device.</span></p>
{% if not_ready %}
<div class="alert alert-danger" id="store-not-ready"><h2 class="h5">The results store is not ready</h2>
<p class="font-monospace small">{{ not_ready }}</p>
<p>Create or upgrade it with <code>{{ migrate_hint }}</code> (same QA_DATABASE_URL as this app), then reload this
page.</p></div>
{% else %}
{% if no_users %}
<div class="alert alert-info" id="no-users">No account exists yet. Create the first one on the server with
<code>{{ create_hint }}</code> (the password is read from standard input or prompted), then sign in.</div>
{% endif %}
{% if error %}<div class="alert alert-danger" id="login-error" role="alert">{{ error }}</div>{% endif %}
<form method="post" action="/login" id="login-form" class="card card-body">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<label class="form-label" for="username">Username</label>
<input class="form-control mb-2" id="username" name="username" autocomplete="username" required
 value="{{ username }}">
<label class="form-label" for="password">Password</label>
<input class="form-control mb-3" id="password" name="password" type="password" autocomplete="current-password"
 required>
<button class="btn btn-primary" type="submit" id="login-submit">Sign in</button>
</form>
{% if oidc_label %}
<a class="btn btn-outline-primary w-100 mt-3" id="oidc-login"
 href="/login/oidc?next={{ next|urlencode }}">Sign in with {{ oidc_label }}</a>
{% endif %}
{% endif %}
</main></body></html>
"""


def _login_page(status: int = 200, error: str | None = None, username: str = "", next_path: str | None = "/",
                retry_after: int | None = None) -> Any:
    not_ready, no_users = None, False
    try:
        store = get_store()
        with store.session() as session:
            no_users = not session.scalar(select(func.count()).select_from(User))
    except StoreNotReadyError as problem:
        not_ready = str(problem)
    body = flask.render_template_string(
        LOGIN_PAGE, not_ready=not_ready, no_users=no_users, error=error, csrf=csrf_token(),
        username=username[:MAX_USERNAME_CHARS], next=safe_next(next_path), migrate_hint=MIGRATE_HINT,
        create_hint=CREATE_USER_HINT, oidc_label=config.label if (config := settings().oidc) else None)
    response = flask.make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _login() -> Any:
    if flask.request.method == "GET":
        return _login_page(next_path=flask.request.args.get("next", "/"))
    form = flask.request.form
    if not csrf_sent_matches():
        flask.abort(400, description="the form's CSRF token is missing or wrong: reload the login page")
    username, next_path = form.get("username", "").strip()[:MAX_USERNAME_CHARS], form.get("next", "/")
    try:
        engine = get_store().engine
    except StoreNotReadyError:
        return _login_page(503, next_path=next_path)
    try:
        user = review_service(engine).authenticate(username, form.get("password", ""), ip=client_ip())
    except AccountLockedError as error:
        return _login_page(429, str(error), username, next_path, retry_after=error.retry_after)
    except AuthenticationError as error:
        return _login_page(401, str(error), username, next_path)
    start_session(user)
    return flask.redirect(safe_next(next_path), code=302)


def _oidc_settings() -> OidcSettings:
    config = settings().oidc
    if config is None:
        flask.abort(404, description="single sign-on is not configured (QA_OIDC_ISSUER, QA_OIDC_CLIENT_ID, "
                                     "QA_OIDC_CLIENT_SECRET)")
    return config


def _oidc_start() -> Any:
    """Send the browser to the identity provider; it comes back to :func:`_oidc_callback`."""
    config = _oidc_settings()
    next_path = safe_next(flask.request.args.get("next"))
    flask.session["oidc_next"] = next_path
    try:
        return oidc.authorize_redirect(config, config.redirect_uri or flask.url_for("qa_oidc_callback",
                                                                                    _external=True))
    except oidc.OidcError as error:
        log.error("single sign-on could not start: %s", error)
        return _login_page(error.status, f"Single sign-on is unavailable: {error}", next_path=next_path)


def _oidc_callback() -> Any:
    """The provider's redirect back: verify who it signed in, then sign in the local account of that name."""
    config = _oidc_settings()
    next_path = safe_next(flask.session.get("oidc_next"))
    try:
        username = oidc.verified_username(config)
    except oidc.OidcError as error:
        log.warning("single sign-on refused: %s", error)
        return _login_page(error.status, f"Single sign-on failed: {error}", next_path=next_path)
    try:
        engine = get_store().engine
    except StoreNotReadyError:
        return _login_page(503, next_path=next_path)
    try:
        user = review_service(engine).authenticate_external(username, config.issuer, ip=client_ip())
    except AuthenticationError as error:
        return _login_page(403, str(error), next_path=next_path)
    start_session(user)
    return flask.redirect(next_path, code=302)


def _logout() -> Any:
    """End every session of the signed-in user (POST with its CSRF token) and audit it; a browser that is not
    signed in (or whose session has ended) just goes to the login page."""
    if flask.request.method != "POST":
        flask.abort(405, valid_methods=["POST"])
    user = authenticated()
    if user is None:
        flask.session.clear()
        return flask.redirect("/login", code=302)
    if not csrf_sent_matches():
        flask.abort(400, description="the logout form's CSRF token is missing or wrong: reload the page")
    flask.session.clear()
    try:
        review_service(get_store().engine).record_logout(int(user["user_id"]), ip=client_ip())
    except (StoreNotReadyError, SQLAlchemyError):
        log.exception("could not end the sessions of user #%s", user["user_id"])
        flask.abort(503, description="the store could not end the session: try again")
    return flask.redirect("/login", code=302)


def install(server: flask.Flask) -> None:
    """Add /login (with single sign-on when configured) and /logout to ``server``."""
    server.add_url_rule("/login", "qa_login", _login, methods=["GET", "POST"])
    server.add_url_rule("/login/oidc", "qa_oidc_start", _oidc_start, methods=["GET"])
    server.add_url_rule("/login/oidc/callback", "qa_oidc_callback", _oidc_callback, methods=["GET"])
    server.add_url_rule("/logout", "qa_logout", _logout, methods=["GET", "POST"])
