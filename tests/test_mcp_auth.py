"""The MCP endpoint over HTTP needs a Bearer token: a person's (audited under their name) or
the shared ``CLOSEGUARD_MCP_TOKEN``; without one, 401 and ``WWW-Authenticate: Bearer``.

Served on 127.0.0.1 by uvicorn in this process, called with the MCP SDK's own client (and
plain httpx where the HTTP answer itself is checked).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Accounts, Approvals, Guarded, Policy
from closeguard.mcp import HTTP_PATH, Gateway, TokenAuth, check_listen, http_app
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.errors import ConfigError
from tests._mcp import POLICY_YAML, User, audited_actors, deciders, leads, texts
from tests._serve import served

SHARED = "the-operators-shared-mcp-token-42"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def _served(store: Store, sim: Simulator, shared: str | None = SHARED) -> AsyncIterator[str]:
    guarded = Guarded(Policy.from_yaml(POLICY_YAML), store=store)
    gateway = Gateway(guarded, lambda actor: sim.client(policy=guarded, actor=actor))
    try:
        async with served(http_app(gateway, TokenAuth(store, shared)), lifespan="on") as base:
            yield base + HTTP_PATH
    finally:
        await gateway.aclose()


@asynccontextmanager
async def _session(
    url: str,
    token: str | None,
    user: User | None = None,
    name: str = "some-agent",
    statuses: list[int] | None = None,
) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session sending ``token``; ``statuses`` collects the HTTP
    status of every response it gets."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    http = create_mcp_http_client(headers=headers)

    async def seen(response: Any) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    http.event_hooks = {"request": [], "response": [seen]}
    async with (
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(
            read,
            write,
            elicitation_callback=user,  # type: ignore[arg-type]
            client_info=types.Implementation(name=name, version="1"),
        ) as session,
    ):
        await session.initialize()
        yield session


async def _raw(url: str, token: str | None) -> httpx.Response:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient() as client:
        return await client.post(url, json=INITIALIZE, headers=headers)


async def _refused_by_sdk_client(url: str, token: str | None) -> None:
    statuses: list[int] = []
    with pytest.raises(ExceptionGroup):  # the SDK wraps it in its task groups
        async with _session(url, token, statuses=statuses):
            pass
    assert statuses == [401]


@pytest.mark.parametrize("token", [None, "wrong-token", "cg_0123456789abcdef_" + "x" * 30])
async def test_no_or_a_wrong_token_is_401_with_www_authenticate(
    store: Store, token: str | None
) -> None:
    sim = Simulator(seed=1, leads=2)
    before = sim.request_count["total"]
    async with _served(store, sim) as url:
        answer = await _raw(url, token)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        await _refused_by_sdk_client(url, token)
        assert (await _raw(url, SHARED)).status_code == 200
    assert sim.request_count["total"] == before
    assert audited_actors(store) == set()


async def test_a_person_is_audited_by_name_and_decides_with_their_roles(store: Store) -> None:
    sim = Simulator(seed=2, leads=4)
    accounts = Accounts(store)
    _, maria = accounts.add("maria", roles=["admin"])
    _, rep = accounts.add("sam", roles=["sales-rep"])
    keep, gone = leads(sim, 2)
    async with _served(store, sim) as url:
        async with _session(url, maria, User(answers=["accept"]), name="claude-code") as s:
            listed = await s.call_tool("lead_list", {"limit": 1})
            assert not listed.is_error, texts(listed)
            deleted = await s.call_tool("lead_delete", {"id": gone})
            assert not deleted.is_error, texts(deleted)
        async with _session(url, rep, User(answers=["accept"]), name="claude-code") as s:
            refused = await s.call_tool("lead_delete", {"id": keep})
            assert refused.is_error and "sales-rep" in texts(refused)
            assert refused.structured_content is not None
            assert refused.structured_content["approvers"] == ["admin"]
    assert gone not in sim.state["leads"] and keep in sim.state["leads"]
    assert audited_actors(store) == {"maria", "sam"}
    assert deciders(store) == {("maria", "token")}
    pending = [a for a in Approvals(store).list() if a.status == "pending"]
    assert [a.actor for a in pending] == ["sam"]


async def test_a_disabled_account_is_refused_at_once(store: Store) -> None:
    sim = Simulator(seed=3, leads=2)
    accounts = Accounts(store)
    _, token = accounts.add("lee", roles=["sales-rep"])
    statuses: list[int] = []
    async with _served(store, sim, shared=None) as url:
        async with _session(url, token, statuses=statuses) as session:
            assert not (await session.call_tool("lead_list", {"limit": 1})).is_error
            accounts.disable("lee")
            with pytest.raises(MCPError):
                await session.call_tool("lead_list", {"limit": 1})
            assert statuses[-1] == 401 and 401 not in statuses[:-1]
        assert (await _raw(url, token)).status_code == 401
        await _refused_by_sdk_client(url, token)
    assert audited_actors(store) == {"lee"}


async def test_the_shared_token_audits_as_the_client_and_sessions_keep_their_owner(
    store: Store,
) -> None:
    """The shared token names nobody: calls go under the client's name, never a person's."""
    sim = Simulator(seed=4, leads=2)
    _, token = Accounts(store).add("ana", roles=["admin"])
    async with _served(store, sim) as url:
        async with _session(url, SHARED, name="desk-bot") as session:
            got = await session.call_tool("lead_list", {"limit": 1})
            assert len(json.loads(texts(got))["data"]) == 1
        opened = await _raw(url, token)
        session_id = opened.headers["mcp-session-id"]
        hijack: dict[str, Any] = {**HEADERS, "Authorization": f"Bearer {SHARED}"}
        hijack["mcp-session-id"] = session_id
        async with httpx.AsyncClient() as client:
            other = await client.post(
                url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=hijack
            )
        assert other.status_code == 404  # a session answers only the token that opened it
        before = sim.request_count["total"]
        async with _session(url, SHARED, name="ana") as posing:
            refused = await posing.call_tool("lead_list", {"limit": 1})
            assert refused.is_error and "cannot act as 'ana'" in texts(refused)
            with pytest.raises(MCPError, match="cannot act as 'ana'"):
                await posing.read_resource("closeguard://policy")
        assert sim.request_count["total"] == before
    assert audited_actors(store) == {"desk-bot"}


def test_a_non_loopback_address_needs_an_account_or_the_shared_token(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOSEGUARD_MCP_TOKEN", raising=False)
    result = CliRunner().invoke(
        app, ["mcp", "serve", "-p", "read-only", "--transport", "http", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "will not listen on 0.0.0.0" in lines[0]
    assert "CLOSEGUARD_MCP_TOKEN" in lines[0] and "Traceback" not in result.output
    with pytest.raises(ConfigError):
        check_listen("10.1.2.3", shared=False, people=False)
    check_listen("10.1.2.3", shared=True, people=False)
    check_listen("10.1.2.3", shared=False, people=True)
    check_listen("127.0.0.1", shared=False, people=False)
    check_listen("::1", shared=False, people=False)
