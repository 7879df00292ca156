"""Single sign-on (OIDC) end to end on each backend: a small identity provider of our own (discovery, JWKS, an
authorize endpoint that signs in whom the test names, a token endpoint that checks the client secret and PKCE and
issues an RS256 id_token) served over real HTTP; the dashboard's Flask test client goes through /login/oidc, the
provider and the callback. The provider only authenticates: the local account decides, and every outcome but a
tampered or unverifiable answer is audited."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import dash
import flask
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select, text
from werkzeug.serving import make_server

from benchmarks.http_client import csrf_token, ensure_user
from pipeline.settings import OidcSettings, Settings
from pipeline.store.database import make_engine
from pipeline.store.review_schema import AuditEntry
from qa_dashboard import auth, config
from tests.dashboard.conftest import SeededStore

CLIENT_ID, CLIENT_SECRET, KID = "qa-dashboard", "client-secret-for-tests", "test-key"
CALLBACK = {"output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/runs"},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}


@dataclass
class FakeProvider:
    """An OpenID provider for tests: who the next authorization signs in, and what the next id_token gets wrong."""

    base: str = ""
    username: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": KID}))
    signing_key: RSAKey | None = None  # another key than the published one: a bad signature
    audience: str = CLIENT_ID
    authorized_party: str | None = None  # the ``azp`` claim, when set
    nonce: str | None = None  # set: this nonce instead of the one the dashboard sent
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)

    def id_token(self, grant: dict[str, str]) -> str:
        now = int(time.time())
        claims = {"iss": self.base, "sub": f"sub-{grant['username']}", "aud": self.audience, "iat": now,
                  "exp": now + 300, "nonce": self.nonce or grant["nonce"], "preferred_username": grant["username"]}
        if self.authorized_party:
            claims["azp"] = self.authorized_party
        return jwt.encode({"alg": "RS256", "kid": KID}, claims, self.signing_key or self.key)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _provider_app(provider: FakeProvider) -> flask.Flask:
    app = flask.Flask("fake_identity_provider")

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Any:
        return {"issuer": provider.base, "authorization_endpoint": f"{provider.base}/authorize",
                "token_endpoint": f"{provider.base}/token", "jwks_uri": f"{provider.base}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"]}

    @app.get("/jwks")
    def jwks() -> Any:
        return KeySet([provider.key]).as_dict(private=False)

    @app.get("/authorize")
    def authorize() -> Any:
        args = flask.request.args.to_dict()
        provider.authorize_requests.append(args)
        if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code":
            return {"error": "invalid_request"}, 400
        code = secrets.token_urlsafe(16)
        provider.codes[code] = {"nonce": args.get("nonce", ""), "challenge": args.get("code_challenge", ""),
                                "redirect_uri": args["redirect_uri"], "username": provider.username}
        return flask.redirect(f"{args['redirect_uri']}?{urlencode({'code': code, 'state': args['state']})}")

    @app.post("/token")
    def token() -> Any:
        client = flask.request.authorization
        if client is None or (client.username, client.password) != (CLIENT_ID, CLIENT_SECRET):
            return {"error": "invalid_client"}, 401
        form = flask.request.form
        grant = provider.codes.pop(form.get("code", ""), None)
        if (grant is None or form.get("redirect_uri") != grant["redirect_uri"]
                or _s256(form.get("code_verifier", "")) != grant["challenge"]):
            return {"error": "invalid_grant"}, 400
        return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                "id_token": provider.id_token(grant)}

    return app


@pytest.fixture(scope="module")
def served_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider()
    http = make_server("127.0.0.1", 0, _provider_app(provider), threaded=True)
    provider.base = f"http://127.0.0.1:{http.server_port}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        http.shutdown()


@pytest.fixture
def provider(served_provider: FakeProvider, configure_app: Callable[..., Settings]) -> FakeProvider:
    """The provider with honest answers, configured as the dashboard's single sign-on."""
    served_provider.signing_key, served_provider.nonce = None, None
    served_provider.audience, served_provider.authorized_party = CLIENT_ID, None
    configure_app(oidc=OidcSettings(served_provider.base, CLIENT_ID, CLIENT_SECRET, label="Hospital ID"))
    return served_provider


@pytest.fixture
def client(dash_app: dash.Dash) -> Any:
    return dash_app.server.test_client()


def _callback_url(client: Any, provider: FakeProvider, username: str) -> str:
    """Start the sign-on and let the provider authenticate ``username``: the callback URL it redirects to."""
    provider.username = username
    start = client.get("/login/oidc?next=/runs")
    assert start.status_code == 302, start.get_data(as_text=True)
    answer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/login/oidc/callback"
    return f"{back.path}?{back.query}"


def _sign_on(client: Any, provider: FakeProvider, username: str) -> Any:
    return client.get(_callback_url(client, provider, username))


def _login_rows(store: SeededStore, username: str) -> list[tuple[str, dict[str, Any] | None]]:
    engine = make_engine(store.url)
    try:
        with engine.connect() as connection:
            return [(row.outcome, row.after) for row in connection.execute(select(AuditEntry.outcome, AuditEntry.after)
                    .where(AuditEntry.action == "login", AuditEntry.actor == username).order_by(AuditEntry.id))]
    finally:
        engine.dispose()


def _signed_out(client: Any) -> bool:
    with client.session_transaction() as session:
        return "user_id" not in session and client.get("/").status_code == 302


def test_the_login_page_offers_single_sign_on_only_when_configured(
        store: SeededStore, client: Any, configure_app: Callable[..., Settings]) -> None:
    configure_app(oidc=None)
    assert 'id="oidc-login"' not in client.get("/login").get_data(as_text=True)
    assert client.get("/login/oidc").status_code == 404
    partial = {"QA_OIDC_ISSUER": "https://idp.example", "QA_OIDC_CLIENT_ID": CLIENT_ID}
    configure_app(oidc=Settings.from_env(partial).oidc)
    assert 'id="oidc-login"' not in client.get("/login").get_data(as_text=True)  # no secret: still off
    configure_app(oidc=Settings.from_env({**partial, "QA_OIDC_CLIENT_SECRET": CLIENT_SECRET}).oidc)
    page = client.get("/login", query_string={"next": "/runs?x=1&y=2"}).get_data(as_text=True)
    assert 'href="/login/oidc?next=/runs%3Fx%3D1%26y%3D2"' in page and "Sign in with single sign-on" in page
    assert 'id="login-form"' in page  # the password login stays


def test_an_existing_user_signs_in_through_the_provider(store: SeededStore, client: Any,
                                                        provider: FakeProvider) -> None:
    name = f"sso-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, "reviewer")
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with Hospital ID" in page
    anonymous_token = csrf_token(client)
    response = _sign_on(client, provider, name)
    assert response.status_code == 302 and response.headers["Location"] == "/runs"
    sent = provider.authorize_requests[-1]
    assert sent["code_challenge_method"] == "S256" and sent["nonce"] and "openid" in sent["scope"].split()
    with client.session_transaction() as session:
        assert set(session) == {*auth.SESSION_KEYS, "csrf"}  # a fresh session: the flow's state is gone
        assert session["username"] == name and session["role"] == "reviewer"
        token = session["csrf"]
    assert token != anonymous_token and client.get_cookie(auth.CSRF_COOKIE).value == token
    assert client.get("/runs").status_code == 200 and name in str(client.get("/_dash-layout").get_json())
    answer = client.post("/_dash-update-component", json=CALLBACK, headers={"X-CSRFToken": token})
    assert answer.status_code == 200 and "runs-grid" in answer.get_data(as_text=True)
    assert _login_rows(store, name) == [("ok", {"method": "oidc", "issuer": provider.base, "role": "reviewer"})]


def test_the_registered_redirect_uri_is_used_behind_a_proxy(store: SeededStore, client: Any, provider: FakeProvider,
                                                             configure_app: Callable[..., Settings]) -> None:
    registered = "https://qa.hospital.example/login/oidc/callback"
    configure_app(oidc=replace(config.settings().oidc, redirect_uri=registered))
    name = f"sso-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, "viewer")
    response = _sign_on(client, provider, name)
    assert provider.authorize_requests[-1]["redirect_uri"] == registered
    assert response.status_code == 302 and response.headers["Location"] == "/runs"


def test_unknown_and_deactivated_users_are_refused(store: SeededStore, client: Any, provider: FakeProvider) -> None:
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"
    response = _sign_on(client, provider, unknown)
    page = response.get_data(as_text=True)
    assert response.status_code == 403 and "no active account" in page and unknown in page
    assert _signed_out(client)
    assert _login_rows(store, unknown) == [("failure", {"method": "oidc", "issuer": provider.base,
                                                        "reason": "unknown user"})]
    retired = f"retired-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, retired, "approver")
    engine = make_engine(store.url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE users SET active = false WHERE username = :name"), {"name": retired})
    finally:
        engine.dispose()
    response = _sign_on(client, provider, retired)
    assert response.status_code == 403 and _signed_out(client)
    assert _login_rows(store, retired) == [("failure", {"method": "oidc", "issuer": provider.base,
                                                        "reason": "deactivated"})]


def test_a_callback_with_a_wrong_state_is_refused(store: SeededStore, client: Any, provider: FakeProvider) -> None:
    name = f"sso-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, "viewer")
    callback = urlsplit(_callback_url(client, provider, name))
    query = dict(parse_qsl(callback.query))
    forged = client.get(callback.path, query_string={**query, "state": "forged"})
    assert forged.status_code == 400 and "not started in this browser session" in forged.get_data(as_text=True)
    assert _signed_out(client)
    stranger = client.application.test_client()  # another browser replaying this one's callback
    assert stranger.get(callback.path, query_string=query).status_code == 400 and _signed_out(stranger)
    assert _login_rows(store, name) == []


@pytest.mark.parametrize(("flaw", "reason"), [("signature", "BadSignatureError"), ("audience", "Invalid claim: 'aud'"),
                                              ("nonce", "Invalid claim: 'nonce'")])
def test_an_id_token_that_does_not_verify_is_refused(store: SeededStore, client: Any, provider: FakeProvider,
                                                     flaw: str, reason: str) -> None:
    name = f"sso-{uuid.uuid4().hex[:8]}"
    ensure_user(store.url, name, "admin")
    if flaw == "signature":
        provider.signing_key = RSAKey.generate_key(2048, parameters={"kid": KID})
    elif flaw == "audience":  # issued to another client, naming this one as the authorized party
        provider.audience, provider.authorized_party = "another-client", CLIENT_ID
    else:
        provider.nonce = "a-nonce-from-another-flow"
    response = _sign_on(client, provider, name)
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 401 and "Single sign-on failed" in page and reason in page
    assert _signed_out(client) and _login_rows(store, name) == []
