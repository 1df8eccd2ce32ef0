"""The MCP gateway over streamable HTTP on 127.0.0.1, with the MCP SDK's own client.

The gateway runs in this process on uvicorn, wired to an in-process simulator, so every
check of what reached Close is made on the simulator itself. Every request carries a
Bearer token: the shared one (``SHARED``) unless a test is about a person's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import mcp_types as types
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from closeguard.guardrails import Approvals, Guarded, Policy
from closeguard.mcp import HTTP_PATH, Gateway, TokenAuth, http_app
from closeguard.simulator import Simulator
from closeguard.store import Store
from tests._mcp import (
    CLIENT_NAME,
    POLICY_YAML,
    REFUSED,
    Outputs,
    User,
    audited_actors,
    check_approval_by_id,
    check_denied_and_bad_arguments,
    check_elicited_delete,
    check_tools_and_reads,
    deciders,
    endpoints_audited,
    leads,
    refusals_audited,
    texts,
)
from tests._serve import served

SHARED = "shared-mcp-token-for-tests-0123456789"


def _gateway(store: Store, sim: Simulator, policy: str = POLICY_YAML) -> Gateway:
    guarded = Guarded(Policy.from_yaml(policy), store=store)
    return Gateway(guarded, lambda actor: sim.client(policy=guarded, actor=actor))


def _app(gateway: Gateway, store: Store) -> object:
    return http_app(gateway, TokenAuth(store, SHARED))


def _transport(url: str, token: str | None = SHARED):  # type: ignore[no-untyped-def]
    """The SDK's streamable HTTP client transport, sending ``token`` as a Bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    return streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))


@asynccontextmanager
async def _session(
    url: str, name: str, user: Callable[..., object] | None = None, token: str | None = SHARED
) -> AsyncIterator[ClientSession]:
    async with (
        _transport(url, token) as (read, write),
        ClientSession(
            read,
            write,
            elicitation_callback=user,  # type: ignore[arg-type]
            client_info=types.Implementation(name=name, version="1.0"),
        ) as session,
    ):
        await session.initialize()
        yield session


async def test_gateway_over_streamable_http(store: Store) -> None:
    sim = Simulator(seed=3, leads=8)
    gateway = _gateway(store, sim)
    out, user = Outputs(), User()
    async with served(_app(gateway, store), lifespan="on") as base:
        url = base + HTTP_PATH
        async with _session(url, CLIENT_NAME, user) as session:
            await check_tools_and_reads(session, sim, out)
            await check_denied_and_bad_arguments(session, sim, out)
            await check_elicited_delete(session, sim, user, store, out, via="mcp-token")
        async with _session(url, "no-elicitation-client") as session:
            await check_approval_by_id(session, sim, store, out)
    await gateway.aclose()
    out.assert_no(sim.api_key)
    assert {CLIENT_NAME, "no-elicitation-client"} <= audited_actors(store)
    assert "lead.delete" in endpoints_audited(store, CLIENT_NAME)
    assert refusals_audited(store, CLIENT_NAME) == REFUSED


async def test_modern_protocol_asks_with_input_required(store: Store) -> None:
    """A 2026-07-28 client gets the question in an InputRequiredResult and answers on retry."""
    sim = Simulator(seed=4, leads=4)
    gateway = _gateway(store, sim)
    user = User(answers=["decline", "accept"])
    keep, gone = leads(sim, 2)
    async with (
        served(_app(gateway, store), lifespan="on") as base,
        Client(_transport(base + HTTP_PATH), elicitation_callback=user) as client,
    ):
        assert client.session.protocol_version == "2026-07-28"
        declined = await client.call_tool("lead_delete", {"id": keep})
        assert declined.is_error and keep in sim.state["leads"]
        accepted = await client.call_tool("lead_delete", {"id": gone})
        assert not accepted.is_error, texts(accepted)
    await gateway.aclose()
    assert gone not in sim.state["leads"] and sim.request_count["lead.delete"] == 1
    assert len(user.asked) == 2 and gone in user.asked[1]


async def test_actor_option_overrides_the_client_name(store: Store) -> None:
    sim = Simulator(seed=5, leads=3)
    guarded = Guarded(Policy.load("read-only"), store=store)
    gateway = Gateway(
        guarded, lambda actor: sim.client(policy=guarded, actor=actor), actor="desk-bot"
    )
    async with (
        served(_app(gateway, store), lifespan="on") as base,
        _session(base + HTTP_PATH, CLIENT_NAME) as session,
    ):
        listed = await session.call_tool("lead_list", {"limit": 1})
        assert len(json.loads(texts(listed))["data"]) == 1
    await gateway.aclose()
    assert audited_actors(store) == {"desk-bot"}


async def test_an_elicited_approval_is_decided_by_the_client(store: Store) -> None:
    """With --actor and the shared token, calls are audited as the actor; the approval names
    the answering client, authenticated by the shared token."""
    sim = Simulator(seed=6, leads=3)
    guarded = Guarded(Policy.from_yaml(POLICY_YAML), store=store)
    gateway = Gateway(
        guarded, lambda actor: sim.client(policy=guarded, actor=actor), actor="desk-bot"
    )
    lead_id = leads(sim, 1)[0]
    async with (
        served(_app(gateway, store), lifespan="on") as base,
        _session(base + HTTP_PATH, CLIENT_NAME, User(answers=["accept"])) as session,
    ):
        deleted = await session.call_tool("lead_delete", {"id": lead_id})
        assert not deleted.is_error, texts(deleted)
    await gateway.aclose()
    (approval,) = Approvals(store).list()
    assert approval.status == "consumed" and approval.decided_by == CLIENT_NAME
    assert approval.actor == "desk-bot" and audited_actors(store) == {"desk-bot"}
    assert deciders(store) == {(CLIENT_NAME, "mcp-token")}
