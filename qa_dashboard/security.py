"""HTTP hardening of the dashboard's Flask server, in front of the login guard (:mod:`qa_dashboard.auth`).

- Headers on every response: a Content-Security-Policy under which Dash works (scripts only from this server plus
  the SHA-256 of Dash's own inline scripts, no ``eval``; styles may be inline, as Dash, Plotly and ag-grid set them;
  images from this server or ``data:``, the slice pictures; no framing, plugins, foreign forms or base URL),
  ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` and
  ``Cross-Origin-Opener-Policy: same-origin``.
- No version disclosure and no 500 from static routes: ``/assets/…`` answers only with a file of the assets folder
  and ``/_dash-component-suites/…`` only with a file Dash registered (anything else, ``..`` included: 404), and
  ``/favicon.ico`` is a 404 (Dash's catch-all would otherwise serve its page, whose script addresses carry the
  versions, to anyone); the component suites need a session (the guard); :class:`QuietRequestHandler` keeps the
  development server's ``Server`` header free of versions.
- Headers and bodies are checked before anything uses them: the ``Host`` header must be a host name or address
  with an optional port (else 400), a body may hold at most :data:`MAX_REQUEST_BYTES` (else 413), and a Dash
  callback request must be a JSON object naming a registered callback with lists of inputs and states (else 400).
  A refusal of a signed-in user's request is audited once (:func:`qa_dashboard.auth.refuse`).
- :func:`safe_next`: where a login may send the browser: a path of this app, nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dash
import flask
from dash.fingerprint import check_fingerprint
from werkzeug.serving import WSGIRequestHandler

from qa_dashboard import auth

MAX_REQUEST_BYTES = 2 << 20
CALLBACK_PATH = "/_dash-update-component"
HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
# a local path and query: RFC 3986 characters only (no space, tab, newline, backslash or other control character),
# starting with one slash
LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]{0,1999}$")
STATIC_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                  "Cross-Origin-Opener-Policy": "same-origin"}
POLICY = ("default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
          "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
          "form-action 'self'")


def safe_next(target: str | None) -> str:
    """``target`` when it is a path of this app (see :data:`LOCAL_PATH`); ``/`` otherwise."""
    if not target or not LOCAL_PATH.match(target):
        return "/"
    return target


class QuietRequestHandler(WSGIRequestHandler):
    """The development server's request handler, without the Werkzeug and Python versions in ``Server``."""

    def version_string(self) -> str:
        return "qa-dashboard"


class _Hardening:
    """The checks and headers of one Dash app (its inline-script hashes and registered files)."""

    def __init__(self, app: dash.Dash) -> None:
        self.app = app
        self.assets = Path(app.config.assets_folder).resolve()
        self._policy: str | None = None

    def policy(self) -> str:
        """The CSP, made at the first response (every page and its inline callbacks are registered by then)."""
        if self._policy is None:
            self._policy = POLICY.format(hashes=" ".join(self.app.csp_hashes()))
        return self._policy

    def check_request(self) -> Any:
        request = flask.request
        if not HOST.match(request.host or ""):
            return flask.jsonify({"error": "the Host header is not a host name or address"}), 400
        path = request.path
        if path == "/favicon.ico" or (path.startswith("/assets/") and not self._asset(path)):
            flask.abort(404)
        if path.startswith("/_dash-component-suites/") and not self._registered(path):
            flask.abort(404)
        return None

    def check_body(self) -> Any:
        """The body's size, and a callback request's shape (after the guard: a signed-in user's request, so the
        refusal is audited)."""
        request = flask.request
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return auth.refuse(f"the request body has {request.content_length} bytes, more than {MAX_REQUEST_BYTES}",
                               413)
        if request.path != CALLBACK_PATH or request.method != "POST":
            return None
        body = request.get_json(silent=True)
        problem = self._callback_problem(body)
        return None if problem is None else auth.refuse(problem, 400)

    def _callback_problem(self, body: Any) -> str | None:
        """What is wrong with a callback request's shape: it must name a registered callback and send exactly its
        inputs and states, in order (Dash passes them by position), and name only its inputs as changed."""
        if not isinstance(body, dict) or not isinstance(body.get("output"), str):
            return "a callback request is a JSON object with an 'output'"
        spec = self.app.callback_map.get(body["output"])
        if spec is None:
            return f"there is no callback with the output {body['output'][:200]!r}"
        for key in ("inputs", "state"):
            sent = body.get(key, [])
            if not isinstance(sent, list) or [_address(item) for item in sent] != [
                    (d["id"], d["property"]) for d in spec[key]]:
                return f"the callback's {key} are not the ones it declares"
        changed = body.get("changedPropIds", [])
        declared = {f"{d['id']}.{d['property']}" for d in spec["inputs"]}
        if not isinstance(changed, list) or not all(isinstance(p, str) and p in declared for p in changed):
            return "changedPropIds names something that is not an input of the callback"
        return None

    def _asset(self, path: str) -> bool:
        wanted = (self.assets / path.removeprefix("/assets/")).resolve()
        return wanted.is_file() and wanted.is_relative_to(self.assets)

    def _registered(self, path: str) -> bool:
        parts = path.removeprefix("/_dash-component-suites/").split("/", 1)
        if len(parts) != 2:
            return False
        package, fingerprinted = parts
        in_package, _ = check_fingerprint(fingerprinted)
        return in_package in self.app.registered_paths.get(package, ())

    def add_headers(self, response: flask.Response) -> flask.Response:
        response.headers["Content-Security-Policy"] = self.policy()
        for name, value in STATIC_HEADERS.items():
            response.headers[name] = value
        return response


def _address(item: Any) -> tuple[Any, Any] | None:
    return (item.get("id"), item.get("property")) if isinstance(item, dict) else None


def install(app: dash.Dash) -> None:
    """Harden ``app``'s server (after :func:`qa_dashboard.auth.install`): the request checks run just before the
    login guard (after Dash's own first-request setup, which registers the component suites' files), the body checks
    after it."""
    hardening = _Hardening(app)
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    functions = server.before_request_funcs.setdefault(None, [])
    functions.insert(functions.index(auth.guard), hardening.check_request)
    server.before_request(hardening.check_body)
    server.after_request(hardening.add_headers)
