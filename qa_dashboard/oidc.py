"""Single sign-on through an OpenID Connect identity provider (Authlib), offered beside the password login.

- Enabled when ``QA_OIDC_ISSUER``, ``QA_OIDC_CLIENT_ID`` and ``QA_OIDC_CLIENT_SECRET`` are set; optional
  ``QA_OIDC_USERNAME_CLAIM`` (default ``preferred_username``), ``QA_OIDC_LABEL`` (the login button's text) and
  ``QA_OIDC_REDIRECT_URI`` (the callback address registered with the provider; default: built from the request,
  which behind a proxy that terminates HTTPS says ``http://``): :class:`pipeline.settings.OidcSettings`, read with
  the process's settings when the app is created.
- The provider's endpoints and keys come from ``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must
  be ``QA_OIDC_ISSUER`` exactly. The flow is the authorization code flow with state, nonce and PKCE (S256); Authlib
  checks the id_token's signature (the provider's JWKS), ``iss``, ``aud``, ``exp`` and ``nonce``. ``aud`` is checked
  through explicit claim options: Authlib's defaults check only ``iss``, and ``azp``, which a token issued to
  another client can set to ours.
- This module only proves who the user is (:func:`verified_username`); whether that name may sign in, and with
  which role, is the store's decision (:meth:`~pipeline.review.service.ReviewService.authenticate_external`).
"""

from __future__ import annotations

import threading
from typing import Any

import flask
import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import MismatchingStateError
from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App
from joserfc.errors import JoseError

from pipeline.settings import OidcSettings

CLIENT_NAME = "oidc"  # Authlib keeps the flow's state in the session under ``_state_oidc_<state>``
SCOPE = "openid profile email"
HTTP_TIMEOUT_S = 10


class OidcError(Exception):
    """A sign-on that cannot go on; ``status`` is the HTTP status to answer with."""

    status = 401


class StateMismatchError(OidcError):
    """The callback's ``state`` is not one this browser session started (forged, replayed or expired)."""

    status = 400


class ProviderUnavailableError(OidcError):
    """The identity provider could not be reached or its discovery document is wrong."""

    status = 502


_clients: dict[OidcSettings, FlaskOAuth2App] = {}
_clients_lock = threading.Lock()


def _client(config: OidcSettings) -> FlaskOAuth2App:
    """One Authlib client per configuration (it caches the discovery document and the provider's keys)."""
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = FlaskOAuth2App(
                FlaskIntegration(CLIENT_NAME), CLIENT_NAME, client_id=config.client_id,
                client_secret=config.client_secret,
                server_metadata_url=f"{config.issuer.rstrip('/')}/.well-known/openid-configuration",
                client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "default_timeout": HTTP_TIMEOUT_S})
        return client


def _checked_metadata(client: FlaskOAuth2App, config: OidcSettings) -> dict[str, Any]:
    """The provider's discovery document, once its ``issuer`` is the configured one."""
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as error:
        raise ProviderUnavailableError(f"could not read the identity provider's discovery document: {error}") from error
    if metadata.get("issuer") != config.issuer:
        raise ProviderUnavailableError(f"the identity provider's discovery document names the issuer "
                                       f"{metadata.get('issuer')!r}, not QA_OIDC_ISSUER={config.issuer!r}: set "
                                       "QA_OIDC_ISSUER to the provider's issuer exactly")
    return metadata


def authorize_redirect(config: OidcSettings, redirect_uri: str) -> flask.Response:
    """The redirect (302) to the provider's authorization endpoint; the state, nonce and PKCE verifier are kept in
    this browser's session for :func:`verified_username`."""
    client = _client(config)
    _checked_metadata(client, config)
    response: flask.Response = client.authorize_redirect(redirect_uri)
    return response


def verified_username(config: OidcSettings) -> str:
    """On the provider's redirect back: exchange the code for tokens, verify the id_token and return the username
    claim it carries. Raises :class:`OidcError` (or a subclass) with the reason otherwise."""
    client = _client(config)
    _checked_metadata(client, config)
    claims_options = {"iss": {"essential": True, "value": config.issuer},
                      "aud": {"essential": True, "value": config.client_id}}
    try:
        token = client.authorize_access_token(claims_options=claims_options)
    except MismatchingStateError as error:
        raise StateMismatchError("this sign-on was not started in this browser session, or it expired: start "
                                 "again from the login page") from error
    except (AuthlibBaseError, JoseError) as error:
        raise OidcError(f"the identity provider's answer was refused: {type(error).__name__}: {error}") from error
    except requests.RequestException as error:
        raise ProviderUnavailableError(f"could not reach the identity provider: {error}") from error
    claims = token.get("userinfo")
    if claims is None:
        raise OidcError("the identity provider's answer carried no id_token")
    username = claims.get(config.username_claim)
    if not isinstance(username, str) or not username:
        raise OidcError(f"the id_token has no {config.username_claim!r} claim: set QA_OIDC_USERNAME_CLAIM to the "
                        "claim that holds the username")
    return username
