"""Single sign-on with any OpenID Connect provider, for the console.

Authorization code flow with PKCE: Authlib builds the authorization URL and redeems the
code; joserfc checks the ID token's signature against the provider's JWKS and its issuer,
audience, expiry and nonce. The person is then matched to an account by the token's
``email`` (an ``email_verified: false`` is refused). The state, nonce and PKCE verifier
travel in a short-lived ``HttpOnly`` cookie (``SameSite=Lax``: the provider's redirect back
is a cross-site navigation), so any console process behind a proxy can finish the login.

Configured by ``CLOSEGUARD_OIDC_ISSUER``, ``CLOSEGUARD_OIDC_CLIENT_ID`` and
``CLOSEGUARD_OIDC_CLIENT_SECRET`` (all three, or none).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from closeguard.tools.errors import ConfigError

__all__ = ["OIDC", "OIDC_COOKIE", "OIDCError", "OIDCSettings"]

OIDC_COOKIE = "cg_oidc"
ENV = ("CLOSEGUARD_OIDC_ISSUER", "CLOSEGUARD_OIDC_CLIENT_ID", "CLOSEGUARD_OIDC_CLIENT_SECRET")
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
METADATA_FOR = 3600.0
"""Seconds the provider's discovery document and keys are kept."""


class OIDCError(Exception):
    """A sign-on that cannot finish; the message is fit to show the person."""


@dataclass(frozen=True)
class OIDCSettings:
    issuer: str
    client_id: str
    client_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OIDCSettings | None:
        """The settings from ``CLOSEGUARD_OIDC_*``; None when none is set."""
        env = os.environ if env is None else env
        values = [env.get(k, "").strip() for k in ENV]
        if not any(values):
            return None
        missing = [k for k, v in zip(ENV, values, strict=True) if not v]
        if missing:
            raise ConfigError(
                f"single sign-on needs {', '.join(ENV)}; missing {', '.join(missing)}"
            )
        return cls(values[0].rstrip("/"), values[1], values[2])

    def __repr__(self) -> str:
        return f"OIDCSettings(issuer={self.issuer!r}, client_id={self.client_id!r})"


def _pack(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def _unpack(value: str | None) -> dict[str, str] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode((value or "").encode()))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class OIDC:
    """One provider: discovery, the login redirect and the check of what comes back."""

    def __init__(
        self, settings: OIDCSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings
        self.transport = transport
        self._meta: tuple[float, dict[str, Any], KeySet] | None = None

    def _client(self, redirect_uri: str, meta: Mapping[str, Any]) -> AsyncOAuth2Client:
        """Authlib's client; it authenticates to the token endpoint with HTTP Basic (the
        default of the spec) unless the provider supports only ``client_secret_post``."""
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        return AsyncOAuth2Client(
            self.settings.client_id,
            self.settings.client_secret,
            scope="openid email profile",
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=auth,
            transport=self.transport,
            timeout=10.0,
        )

    async def metadata(self) -> tuple[dict[str, Any], KeySet]:
        """The provider's discovery document and signing keys (cached for an hour)."""
        if self._meta is not None and time.monotonic() - self._meta[0] < METADATA_FOR:
            return self._meta[1], self._meta[2]
        issuer = self.settings.issuer
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as http:
                found = await http.get(f"{issuer}/.well-known/openid-configuration")
                found.raise_for_status()
                meta = found.json()
                if meta.get("issuer", "").rstrip("/") != issuer:
                    raise OIDCError(f"the provider at {issuer} names another issuer")
                keys = await http.get(meta["jwks_uri"])
                keys.raise_for_status()
                key_set = KeySet.import_key_set(keys.json())
        except (httpx.HTTPError, ValueError, KeyError, JoseError) as exc:
            raise OIDCError(f"cannot read the sign-on provider at {issuer}: {exc}") from None
        self._meta = (time.monotonic(), meta, key_set)
        return meta, key_set

    async def start(self, redirect_uri: str, next_path: str) -> tuple[str, str]:
        """Where to send the browser, and the cookie value that must come back with it."""
        meta, _ = await self.metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        async with self._client(redirect_uri, meta) as client:
            url, _ = client.create_authorization_url(
                meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        cookie = _pack({"state": state, "nonce": nonce, "verifier": verifier, "next": next_path})
        return url, cookie

    async def finish(
        self, redirect_uri: str, params: Mapping[str, str], cookie: str | None
    ) -> tuple[str, str]:
        """The verified email of the person the provider sent back, and where they were
        going; ``OIDCError`` for anything amiss."""
        pending = _unpack(cookie)
        if pending is None or not secrets.compare_digest(
            params.get("state", ""), pending.get("state", "\0")
        ):
            raise OIDCError("this sign-on was not started here (or took too long): try again")
        if "error" in params:
            raise OIDCError(f"the provider refused the sign-on: {params['error']}")
        if not params.get("code"):
            raise OIDCError("the provider sent no authorization code")
        meta, key_set = await self.metadata()
        try:
            async with self._client(redirect_uri, meta) as client:
                token = await client.fetch_token(
                    meta["token_endpoint"], code=params["code"], code_verifier=pending["verifier"]
                )
        except Exception as exc:  # Authlib raises its own and httpx's errors here
            raise OIDCError(f"the provider did not redeem the code: {type(exc).__name__}") from None
        claims = self._claims(
            str(token.get("id_token") or ""), key_set, str(meta["issuer"]), pending["nonce"]
        )
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise OIDCError("the provider sent no email: ask for the 'email' scope")
        if claims.get("email_verified") is False:
            raise OIDCError(f"the provider has not verified {email}")
        return email, pending.get("next", "/approvals")

    def _claims(self, id_token: str, key_set: KeySet, issuer: str, nonce: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(id_token, key_set, algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": self.settings.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OIDCError(f"the ID token is not valid: {exc}") from None
        return dict(decoded.claims)
