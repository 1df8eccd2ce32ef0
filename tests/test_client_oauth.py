"""OAuth: Bearer auth, one refresh on 401 (also for concurrent callers), no refresh loops."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from closeguard.tools.client import DEFAULT_TOKEN_URL, OAuthCredentials
from closeguard.tools.errors import Unauthorized

CREDS = OAuthCredentials(
    access_token="old_access_123",
    refresh_token="refresh_123",
    client_id="client_abc",
    client_secret="csecret_123",
)


class OAuthServer:
    """Accepts one access token at a time; the token URL swaps it for a new one."""

    def __init__(self, *, refresh_works: bool = True, always_401: bool = False) -> None:
        self.valid = "new_access_456"
        self.refresh_works = refresh_works
        self.always_401 = always_401
        self.token_requests: list[dict[str, list[str]]] = []
        self.api_requests: list[httpx.Request] = []
        self.auths: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == DEFAULT_TOKEN_URL:
            self.token_requests.append(parse_qs(request.content.decode()))
            await asyncio.sleep(0)  # let concurrent callers pile up on the lock
            if not self.refresh_works:
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(
                200,
                json={
                    "access_token": self.valid,
                    "refresh_token": "refresh_789",
                    "expires_in": 3600,
                },
            )
        self.api_requests.append(request)
        self.auths.append(request.headers["authorization"])
        if self.always_401 or request.headers["authorization"] != f"Bearer {self.valid}":
            return httpx.Response(401, json={"error": "Unauthorized"})
        return httpx.Response(200, json={"id": "user_1", "email": "me@example.com"})


async def test_401_refreshes_once_stores_tokens_and_retries(make_client: Any) -> None:
    server = OAuthServer()
    saved: list[OAuthCredentials] = []

    async def persist(creds: OAuthCredentials) -> None:
        saved.append(creds)

    client = make_client(server, oauth=CREDS, on_token_refresh=persist)
    me = await client.users.me()
    assert me.email == "me@example.com"
    assert server.token_requests == [
        {
            "grant_type": ["refresh_token"],
            "refresh_token": ["refresh_123"],
            "client_id": ["client_abc"],
            "client_secret": ["csecret_123"],
        }
    ]
    assert server.auths == ["Bearer old_access_123", "Bearer new_access_456"]
    assert client.oauth_credentials.access_token == "new_access_456"
    assert client.oauth_credentials.refresh_token == "refresh_789"
    assert saved == [client.oauth_credentials]
    # The retry belongs to the same logical call.
    ids = {r.extensions["closeguard"]["call_id"] for r in server.api_requests}
    assert len(ids) == 1
    await client.users.me()
    assert len(server.token_requests) == 1


async def test_second_401_after_refresh_raises_without_looping(make_client: Any) -> None:
    server = OAuthServer(always_401=True)
    client = make_client(server, oauth=CREDS)
    with pytest.raises(Unauthorized) as info:
        await client.users.me()
    assert len(server.token_requests) == 1
    assert len(server.api_requests) == 2
    for secret in ("old_access_123", "new_access_456", "refresh_123", "csecret_123"):
        assert secret not in str(info.value) and secret not in repr(info.value)


async def test_failed_refresh_raises_unauthorized(make_client: Any) -> None:
    server = OAuthServer(refresh_works=False)
    client = make_client(server, oauth=CREDS)
    with pytest.raises(Unauthorized, match="refresh failed") as info:
        await client.users.me()
    assert b"csecret_123" not in info.value.response.request.content
    assert b"refresh_123" not in info.value.response.request.content
    assert len(server.api_requests) == 1


async def test_concurrent_401s_refresh_only_once(make_client: Any) -> None:
    server = OAuthServer()
    client = make_client(server, oauth=CREDS)
    results = await asyncio.gather(*(client.users.me() for _ in range(6)))
    assert {u.id for u in results} == {"user_1"}
    assert len(server.token_requests) == 1


async def test_without_refresh_token_401_is_raised_directly(make_client: Any) -> None:
    server = OAuthServer()
    client = make_client(server, oauth=OAuthCredentials(access_token="old_access_123"))
    with pytest.raises(Unauthorized):
        await client.users.me()
    assert server.token_requests == []
