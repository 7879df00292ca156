"""Login for the dashboard: a Flask guard in front of every page, Dash callback and export URL, backed by server-side
sessions (:mod:`pipeline.review.sessions`); the login form and logout are :mod:`qa_dashboard.login`'s.

- Only ``/login`` (and its single sign-on routes), ``/logout`` and ``/assets/`` are served without a session; a page
  request without one is redirected (302) to ``/login``, anything else (Dash's ``/_dash-*`` endpoints, its
  component suites, non-GET requests) gets 401 JSON with no data.
- The cookie (Flask's signed ``qa_session``: HttpOnly, SameSite=Lax, Secure when ``QA_SECURE_COOKIES`` is set) holds
  only the session's random id; the session itself, its user and its end are in the store. Every request resolves it
  again: a logout, a password or role change, a deactivation, an end on the sessions page, ``QA_SESSION_IDLE_MINUTES``
  without a request or ``QA_SESSION_MAX_HOURS`` after the login end it, and the old cookie opens nothing.
- CSRF: every request other than GET/HEAD of a signed-in session must carry the session's token (an HMAC of its id
  under the secret key), in the ``X-CSRFToken`` header or a ``csrf_token`` form field, else 403 JSON with no data.
  Dash's renderer sends the header from the ``_csrf_token`` cookie (readable by scripts, SameSite=Lax); server-
  rendered forms embed :func:`csrf_token`. Before login the token is a random one kept in the cookie.
- A refused request of a signed-in user (CSRF, a malformed callback or body, a bad input) is audited once
  (:func:`refuse`, and the app's error handler).
- The secret key comes from ``QA_SECRET_KEY``; without it a random key is made per process (sessions end at restart
  and are not shared between gunicorn workers) and a warning is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
from typing import Any

import flask
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from pipeline.errors import StoreNotReadyError
from pipeline.review.service import ReviewService, UserInfo
from pipeline.settings import Settings
from qa_dashboard.config import settings
from qa_dashboard.store import get_store

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/login", "/login/oidc", "/login/oidc/callback", "/logout"})
PUBLIC_PREFIXES = ("/assets/",)
SAFE_METHODS = frozenset({"GET", "HEAD"})
SESSION_KEY = "sid"
CSRF_COOKIE = "_csrf_token"  # the cookie and header names Dash's renderer uses (Dash's csrf_token_name/header_name)
CSRF_HEADER = "X-CSRFToken"
CSRF_FIELD = "csrf_token"
MAX_TOKEN_CHARS = 200

_services: dict[int, ReviewService] = {}
_services_lock = threading.Lock()


def review_service(engine: Engine) -> ReviewService:
    """One ReviewService per store engine (its dummy hash for unknown usernames is computed once)."""
    with _services_lock:
        service = _services.get(id(engine))
        if service is None:
            service = _services[id(engine)] = ReviewService(engine, review=settings().review)
        return service


def client_ip() -> str | None:
    """The request's peer address, when it is an IP address."""
    try:
        return str(ipaddress.ip_address(flask.request.remote_addr or ""))
    except ValueError:
        return None


def _session_id() -> str | None:
    sid = flask.session.get(SESSION_KEY)
    return sid if isinstance(sid, str) and 0 < len(sid) <= MAX_TOKEN_CHARS else None


def csrf_token() -> str:
    """This session's CSRF token, for a ``csrf_token`` hidden field of a form that POSTs: derived from the signed-in
    session's id, or (before login) a random one made on first use."""
    sid = _session_id()
    if sid is not None:
        secret = str(flask.current_app.secret_key).encode()
        return hmac.new(secret, b"csrf|" + sid.encode(), hashlib.sha256).hexdigest()
    token = flask.session.get("csrf")
    if not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_sent_matches() -> bool:
    """Whether the request carries the session's CSRF token (``X-CSRFToken`` header or ``csrf_token`` field)."""
    expected = csrf_token() if _session_id() is not None else flask.session.get("csrf")
    sent = flask.request.headers.get(CSRF_HEADER) or flask.request.form.get(CSRF_FIELD)
    if not (expected and sent) or len(sent) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(str(sent).encode(), str(expected).encode())


def current_user() -> dict[str, Any] | None:
    """The signed-in user of this request (id, username, role, session id); None without one, or outside a request
    (layout validation)."""
    return flask.g.get("qa_user") if flask.has_request_context() else None


def authenticated() -> dict[str, Any] | None:
    """The user of the cookie's session when the session is open and the user active in the ready store; else None."""
    sid = _session_id()
    if sid is None:
        return None
    try:
        found = review_service(get_store().engine).resolve_session(sid, settings().session_idle_minutes,
                                                                   ip=client_ip())
    except StoreNotReadyError:
        return None
    except Exception:  # an unreachable database: treat as signed out rather than leak an error page
        log.exception("could not check the session")
        return None
    if found is None:
        return None
    session_id, actor = found
    return {"user_id": actor.user_id, "username": actor.username, "role": actor.role.value,
            "session_id": session_id}


def start_session(user: UserInfo) -> None:
    """A new server-side session for the signed-in user (a fresh cookie: no fixation); the cookie holds its id."""
    token = review_service(get_store().engine).start_session(
        user.id, settings().session_max_hours, ip=client_ip(), user_agent=flask.request.headers.get("User-Agent"))
    flask.session.clear()
    flask.session[SESSION_KEY] = token


def refuse(reason: str, status: int) -> tuple[flask.Response, int]:
    """Answer a refused request with ``status`` and the one-line reason as JSON; audited once (``request.refused``)
    when a user is signed in."""
    user = current_user()
    request = flask.request
    log.warning("refused %s %s (%d) for %s: %s", request.method, request.path, status,
                user["username"] if user else "anonymous", reason[:300])
    if user is not None:
        try:
            review_service(get_store().engine).record_refusal(
                int(user["user_id"]), "request.refused", f"{request.method} {request.path}"[:200],
                f"{status}: {reason}", ip=client_ip())
        except (StoreNotReadyError, SQLAlchemyError):
            log.exception("could not audit the refusal")
    return flask.jsonify({"error": reason}), status


def guard() -> Any:
    """The login guard (a ``before_request`` function; see the module's description)."""
    path = flask.request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    user = authenticated()
    if user is None:
        if _session_id() is not None:
            flask.session.clear()  # an ended session: drop its cookie
        if flask.request.method in SAFE_METHODS and not path.startswith("/_"):
            full = flask.request.full_path if flask.request.query_string else path
            return flask.redirect(flask.url_for("qa_login", next=full), code=302)
        return flask.jsonify({"error": "authentication required", "login": "/login"}), 401
    flask.g.qa_user = user
    if flask.request.method not in SAFE_METHODS and not csrf_sent_matches():
        return refuse(f"CSRF token missing or wrong: send the {CSRF_HEADER} header or a {CSRF_FIELD} field "
                      "(reload the page)", 403)
    return None


def _too_large(_error: RequestEntityTooLarge) -> tuple[flask.Response, int]:
    return refuse("the request body is too large", 413)


def _sync_csrf_cookie(response: flask.Response) -> flask.Response:
    """Keep the ``_csrf_token`` cookie equal to a signed-in session's token; drop it once signed out."""
    if flask.request.path.startswith(PUBLIC_PREFIXES):
        return response  # static files: leave the session untouched (no Vary: Cookie)
    token = csrf_token() if _session_id() is not None else None
    sent = flask.request.cookies.get(CSRF_COOKIE)
    config = flask.current_app.config
    if token and sent != token:
        response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="Lax",
                            secure=bool(config["SESSION_COOKIE_SECURE"]))
    elif not token and sent is not None:
        response.delete_cookie(CSRF_COOKIE, samesite="Lax", secure=bool(config["SESSION_COOKIE_SECURE"]))
    return response


def install(server: flask.Flask, configured: Settings) -> None:
    """Protect ``server`` (the Dash app's Flask server): cookie settings, the guard and the CSRF cookie, /login
    (with single sign-on when configured) and /logout."""
    from qa_dashboard import login  # login's routes use this module's helpers

    secret = configured.secret_key
    if not secret:
        log.warning("QA_SECRET_KEY is not set: using a random per-process key (sessions end when the app restarts "
                    "and are not shared between workers); set QA_SECRET_KEY in production")
        secret = secrets.token_hex(32)
    server.secret_key = secret
    server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                         SESSION_COOKIE_SECURE=configured.secure_cookies, SESSION_COOKIE_NAME="qa_session")
    server.before_request(guard)
    server.after_request(_sync_csrf_cookie)
    server.register_error_handler(RequestEntityTooLarge, _too_large)
    login.install(server)
