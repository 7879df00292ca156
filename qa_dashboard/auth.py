"""Login for the dashboard: a Flask guard in front of every page, Dash callback and export URL, and a server-rendered
login form backed by :class:`~pipeline.review.service.ReviewService` (hashed local accounts, throttling, audit rows).

- Only ``/login`` (and its single sign-on routes, :mod:`qa_dashboard.oidc`), ``/logout``, static assets
  (``/assets/``, ``/_dash-component-suites/``) and the favicon are served without a session; a page request without
  one is redirected (302) to ``/login``, anything else (Dash's ``/_dash-*`` endpoints, non-GET requests) gets 401
  JSON with no data.
- The session (Flask's signed cookie: HttpOnly, SameSite=Lax, Secure when ``QA_SECURE_COOKIES`` is set) holds the user
  id, name, role and a CSRF token; the user is re-read from the store on every request, so a deactivation applies at
  once. A login (password or single sign-on) starts a fresh session (no fixation) with a new token.
- CSRF: every request other than GET/HEAD of a signed-in session must carry the session's token, in the
  ``X-CSRFToken`` header or a ``csrf_token`` form field, else 403 JSON with no data. Dash's renderer sends the header
  from the ``_csrf_token`` cookie, which mirrors the token (readable by scripts, SameSite=Lax, Secure like the
  session cookie); server-rendered forms embed :func:`csrf_token`. The login form (400 when its token is wrong) and
  ``/logout`` (POST only) check it themselves.
- The secret key comes from ``QA_SECRET_KEY``; without it a random key is made per process (sessions end at restart
  and are not shared between gunicorn workers) and a warning is logged.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from typing import Any

import flask
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from pipeline.errors import StoreNotReadyError
from pipeline.review.service import AccountLockedError, AuthenticationError, ReviewService, UserInfo
from pipeline.review.workflow import Action, PermissionDenied
from pipeline.settings import OidcSettings, Settings
from pipeline.store.review_schema import User
from qa_dashboard import oidc
from qa_dashboard.config import settings
from qa_dashboard.store import MIGRATE_HINT, get_store

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/login", "/login/oidc", "/login/oidc/callback", "/logout", "/favicon.ico",
                          "/_favicon.ico"})
PUBLIC_PREFIXES = ("/assets/", "/_dash-component-suites/")
SAFE_METHODS = frozenset({"GET", "HEAD"})
CREATE_USER_HINT = "python -m pipeline users add --username U --role admin"
SESSION_KEYS = ("user_id", "username", "role")
CSRF_COOKIE = "_csrf_token"  # the cookie and header names Dash's renderer uses (Dash's csrf_token_name/header_name)
CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = "csrf_token"

_services: dict[int, ReviewService] = {}
_services_lock = threading.Lock()


def review_service(engine: Engine) -> ReviewService:
    """One ReviewService per store engine (its dummy hash for unknown usernames is computed once)."""
    with _services_lock:
        service = _services.get(id(engine))
        if service is None:
            service = _services[id(engine)] = ReviewService(engine)
        return service



def csrf_token() -> str:
    """This session's CSRF token (made on first use), for a ``csrf_token`` hidden field of a form that POSTs."""
    token = flask.session.get("csrf")
    if not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def _csrf_sent_matches() -> bool:
    """Whether the request carries the session's CSRF token (``X-CSRFToken`` header or ``csrf_token`` field)."""
    expected = flask.session.get("csrf")
    sent = flask.request.headers.get(CSRF_HEADER) or flask.request.form.get(CSRF_FIELD)
    return bool(expected and sent) and hmac.compare_digest(str(sent).encode(), str(expected).encode())


def _safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: no scheme, no ``//`` or backslash)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def current_user() -> dict[str, Any] | None:
    """The signed-in user of this request (id, username, role); None without one, or outside a request (layout
    validation)."""
    return flask.g.get("qa_user") if flask.has_request_context() else None


def _authenticated() -> dict[str, Any] | None:
    """The session's user when it is still an active user of the ready store; else None."""
    user_id = flask.session.get("user_id")
    if not isinstance(user_id, int):
        return None
    try:
        actor = review_service(get_store().engine).check(user_id, Action.VIEW)
    except (StoreNotReadyError, PermissionDenied):
        return None
    except Exception:  # an unreachable database: treat as signed out rather than leak an error page
        log.exception("could not check the session's user")
        return None
    return {"user_id": actor.user_id, "username": actor.username, "role": actor.role.value}


def _guard() -> Any:
    path = flask.request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    user = _authenticated()
    if user is None:
        if flask.request.method in SAFE_METHODS and not path.startswith("/_"):
            full = flask.request.full_path if flask.request.query_string else path
            return flask.redirect(flask.url_for("qa_login", next=full), code=302)
        return flask.jsonify({"error": "authentication required", "login": "/login"}), 401
    if flask.request.method not in SAFE_METHODS and not _csrf_sent_matches():
        log.warning("refused %s %s by %s: CSRF token missing or wrong", flask.request.method, path, user["username"])
        return flask.jsonify({"error": f"CSRF token missing or wrong: send the {CSRF_HEADER} header or a "
                                       f"{CSRF_FIELD} field (reload the page)"}), 403
    flask.g.qa_user = user
    return None


def _sync_csrf_cookie(response: flask.Response) -> flask.Response:
    """Keep the ``_csrf_token`` cookie equal to a signed-in session's token; drop it once signed out."""
    if flask.request.path.startswith(PUBLIC_PREFIXES):
        return response  # static files: leave the session untouched (no Vary: Cookie)
    token = flask.session.get("csrf") if flask.session.get("user_id") is not None else None
    sent = flask.request.cookies.get(CSRF_COOKIE)
    config = flask.current_app.config
    if token and sent != token:
        response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="Lax",
                            secure=bool(config["SESSION_COOKIE_SECURE"]))
    elif not token and sent is not None:
        response.delete_cookie(CSRF_COOKIE, samesite="Lax", secure=bool(config["SESSION_COOKIE_SECURE"]))
    return response


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


def _login_page(status: int = 200, error: str | None = None, username: str = "", next_path: str = "/") -> Any:
    not_ready, no_users = None, False
    try:
        store = get_store()
        with store.session() as session:
            no_users = not session.scalar(select(func.count()).select_from(User))
    except StoreNotReadyError as problem:
        not_ready = str(problem)
    body = flask.render_template_string(
        LOGIN_PAGE, not_ready=not_ready, no_users=no_users, error=error, csrf=csrf_token(), username=username,
        next=_safe_next(next_path), migrate_hint=MIGRATE_HINT, create_hint=CREATE_USER_HINT,
        oidc_label=config.label if (config := settings().oidc) else None)
    response = flask.make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _start_session(user: UserInfo) -> None:
    """A fresh session for the signed-in user (no session fixation) with a new CSRF token; the cookie follows."""
    flask.session.clear()
    flask.session.update({"user_id": user.id, "username": user.username, "role": user.role.value,
                          "csrf": secrets.token_urlsafe(32)})


def _login() -> Any:
    if flask.request.method == "GET":
        return _login_page(next_path=flask.request.args.get("next", "/"))
    form = flask.request.form
    if not _csrf_sent_matches():
        flask.abort(400, description="the form's CSRF token is missing or wrong: reload the login page")
    username, next_path = form.get("username", "").strip(), form.get("next", "/")
    try:
        engine = get_store().engine
    except StoreNotReadyError:
        return _login_page(503, next_path=next_path)
    try:
        user = review_service(engine).authenticate(username, form.get("password", ""), ip=flask.request.remote_addr)
    except AccountLockedError as error:
        return _login_page(429, str(error), username, next_path)
    except AuthenticationError as error:
        return _login_page(401, str(error), username, next_path)
    _start_session(user)
    return flask.redirect(_safe_next(next_path), code=302)


def _oidc_settings() -> OidcSettings:
    config = settings().oidc
    if config is None:
        flask.abort(404, description="single sign-on is not configured (QA_OIDC_ISSUER, QA_OIDC_CLIENT_ID, "
                                     "QA_OIDC_CLIENT_SECRET)")
    return config


def _oidc_start() -> Any:
    """Send the browser to the identity provider; it comes back to :func:`_oidc_callback`."""
    config = _oidc_settings()
    next_path = _safe_next(flask.request.args.get("next"))
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
    next_path = _safe_next(flask.session.get("oidc_next"))
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
        user = review_service(engine).authenticate_external(username, config.issuer, ip=flask.request.remote_addr)
    except AuthenticationError as error:
        return _login_page(403, str(error), next_path=next_path)
    _start_session(user)
    return flask.redirect(next_path, code=302)


def _logout() -> Any:
    """End the session (POST with its CSRF token) and audit it; a session that is not signed in just goes to
    the login page. GET is answered 405 here (not by Dash's catch-all page route), so a link cannot log out."""
    if flask.request.method != "POST":
        flask.abort(405, valid_methods=["POST"])
    user_id = flask.session.get("user_id")
    if not isinstance(user_id, int):
        flask.session.clear()
        return flask.redirect("/login", code=302)
    if not _csrf_sent_matches():
        flask.abort(400, description="the logout form's CSRF token is missing or wrong: reload the page")
    flask.session.clear()
    try:
        review_service(get_store().engine).record_logout(user_id, ip=flask.request.remote_addr)
    except (StoreNotReadyError, SQLAlchemyError):  # the session ends all the same
        log.exception("could not audit the logout of user #%s", user_id)
    return flask.redirect("/login", code=302)


def install(server: flask.Flask, configured: Settings) -> None:
    """Protect ``server`` (the Dash app's Flask server): session settings, the guard and the CSRF cookie, /login
    (with single sign-on when configured) and /logout."""
    secret = configured.secret_key
    if not secret:
        log.warning("QA_SECRET_KEY is not set: using a random per-process key (sessions end when the app restarts "
                    "and are not shared between workers); set QA_SECRET_KEY in production")
        secret = secrets.token_hex(32)
    server.secret_key = secret
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                         SESSION_COOKIE_SECURE=configured.secure_cookies,
                         SESSION_COOKIE_NAME="qa_session")
    server.before_request(_guard)
    server.after_request(_sync_csrf_cookie)
    server.add_url_rule("/login", "qa_login", _login, methods=["GET", "POST"])
    server.add_url_rule("/login/oidc", "qa_oidc_start", _oidc_start, methods=["GET"])
    server.add_url_rule("/login/oidc/callback", "qa_oidc_callback", _oidc_callback, methods=["GET"])
    server.add_url_rule("/logout", "qa_logout", _logout, methods=["GET", "POST"])
