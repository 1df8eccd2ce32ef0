"""Who is calling over HTTP: Bearer tokens checked through the MCP SDK's resource-server hooks.

Every request to the streamable HTTP endpoint carries ``Authorization: Bearer <token>``:
a closeguard account's personal token (``closeguard users add``), which names a person, or
the shared ``CLOSEGUARD_MCP_TOKEN``, which names nobody. ``TokenAuth`` is the SDK's
``TokenVerifier``; the SDK's bearer middleware calls it on every request (so a disabled
account is refused at once), answers 401 with ``WWW-Authenticate: Bearer`` without a valid
token, and binds each MCP session to the principal that opened it. An OAuth 2.1
authorization server can be added later by giving the SDK a verifier of its tokens (and
``AuthSettings.resource_server_url``, which serves the protected-resource metadata): the
gateway reads only the ``Caller`` that ``caller_of`` builds from the verified token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings

from closeguard.guardrails import Accounts
from closeguard.store import Store
from closeguard.tools.errors import ConfigError
from closeguard.tools.serving import is_loopback

__all__ = [
    "SHARED_CLIENT",
    "TOKEN_ENV",
    "Caller",
    "TokenAuth",
    "auth_settings",
    "caller_of",
    "check_listen",
    "is_loopback",
]

TOKEN_ENV = "CLOSEGUARD_MCP_TOKEN"
SHARED_CLIENT = "closeguard:shared-token"
"""The ``client_id`` of requests made with the shared token (no person behind it)."""
_PERSON = "account:"


@dataclass(frozen=True)
class Caller:
    """The principal of a request: a person (``name``, ``roles``, ``via="token"``) or the
    holder of the shared token (``name`` None, ``via="mcp-token"``)."""

    name: str | None
    roles: tuple[str, ...]
    via: str

    @property
    def person(self) -> bool:
        return self.name is not None


class TokenAuth:
    """The SDK's ``TokenVerifier`` for personal tokens and the shared token."""

    def __init__(self, store: Store, shared: str | None = None) -> None:
        self.accounts = Accounts(store)
        self.shared = shared or None

    async def verify_token(self, token: str) -> AccessToken | None:
        """The verified principal of ``token``, or None (the SDK then answers 401)."""
        if self.shared is not None and hmac.compare_digest(
            token.strip().encode(), self.shared.encode()
        ):
            return AccessToken(token="", client_id=SHARED_CLIENT, scopes=[])
        account = await self.accounts.aauthenticate(token)
        if account is None:
            return None
        return AccessToken(
            token="",
            client_id=_PERSON + account.name,
            subject=account.name,
            scopes=[],
            claims={"roles": list(account.roles)},
        )


def caller_of(request: Any) -> Caller | None:
    """The ``Caller`` the bearer middleware verified for this HTTP request; None on stdio."""
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    if not isinstance(user, AuthenticatedUser):
        return None
    token = user.access_token
    if token.client_id.startswith(_PERSON) and token.subject:
        roles = tuple(str(r) for r in (token.claims or {}).get("roles", ()))
        return Caller(token.subject, roles, "token")
    return Caller(None, (), "mcp-token")


def auth_settings(url: str) -> AuthSettings:
    """The SDK's settings for a resource server whose tokens closeguard issues itself.

    ``url`` (this server) stands as the issuer; no protected-resource metadata is served
    (``resource_server_url`` unset): there is no OAuth authorization server to point
    clients at yet, and advertising one would send OAuth clients to a login that is not
    there."""
    return AuthSettings(issuer_url=url, resource_server_url=None)


def check_listen(host: str, *, shared: bool, people: bool) -> None:
    """Refuse a non-loopback address when no request could ever be authenticated except by
    a token nobody chose: there must be an enabled account or ``CLOSEGUARD_MCP_TOKEN``."""
    if not is_loopback(host) and not shared and not people:
        raise ConfigError(
            f"the MCP endpoint will not listen on {host} (reachable from other machines) "
            f"without a token: add a person (closeguard users add NAME --role ROLE) or set "
            f"{TOKEN_ENV}, or listen on 127.0.0.1"
        )
