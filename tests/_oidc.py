"""A small OpenID Connect provider for tests: discovery, authorize (signs in ``who`` at
once), token (code + client secret + PKCE S256) and JWKS, ID tokens signed with a test RSA
key by joserfc. ``flaw`` makes it send one kind of bad ID token."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "closeguard-console"
CLIENT_SECRET = "oidc-client-secret-for-tests"
_KEY = RSAKey.generate_key(2048, parameters={"kid": "test-1"})
_OTHER = RSAKey.generate_key(2048, parameters={"kid": "test-1"})


@dataclass
class Provider:
    issuer: str = ""
    who: dict[str, Any] = field(default_factory=lambda: {"email": "maria@example.com"})
    auth_methods: tuple[str, ...] = ()
    """What discovery says of client authentication (nothing: Basic, the default)."""
    flaw: str | None = None
    """``key`` (signed with another key), ``aud``, ``nonce``, ``expired`` or ``None``."""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    redeemed: int = 0
    auth_used: str | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                **(
                    {"token_endpoint_auth_methods_supported": list(self.auth_methods)}
                    if self.auth_methods
                    else {}
                ),
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([_KEY]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return Response("bad request", 400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return Response("PKCE required", 400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "nonce": q.get("nonce", ""),
            "redirect_uri": q["redirect_uri"],
            "challenge": q["code_challenge"],
        }
        target = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        return RedirectResponse(target, 302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form.get("code")), None)
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            self.auth_used = "basic"
        else:
            client, secret = str(form.get("client_id")), str(form.get("client_secret"))
            self.auth_used = "post"
        if (
            grant is None
            or client != CLIENT_ID
            or secret != CLIENT_SECRET
            or form.get("redirect_uri") != grant["redirect_uri"]
        ):
            return JSONResponse({"error": "invalid_grant"}, 400)
        verifier = str(form.get("code_verifier") or "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        self.redeemed += 1
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": "someone-else" if self.flaw == "aud" else CLIENT_ID,
            "iat": now,
            "exp": now - 10 if self.flaw == "expired" else now + 300,
            "nonce": "another-nonce" if self.flaw == "nonce" else grant["nonce"],
            **self.who,
        }
        key = _OTHER if self.flaw == "key" else _KEY
        id_token = jwt.encode({"alg": "RS256", "kid": "test-1"}, claims, key)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )
