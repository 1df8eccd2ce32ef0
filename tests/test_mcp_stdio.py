"""``closeguard mcp serve`` as a real subprocess on stdio, with the MCP SDK's own client.

The gateway process is given a Close key and base URL pointing at a simulator this test
serves on 127.0.0.1 (the key is a known fake one the simulator accepts), so what reached
Close is checked on the simulator, and the key is searched for in everything the gateway
said: tool results, resources and its stderr.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from closeguard.simulator import Simulator
from closeguard.store import Store
from tests._mcp import (
    CLIENT_NAME,
    FAKE_KEY,
    POLICY_YAML,
    READ_ONLY_TOOLS,
    REFUSED,
    Outputs,
    User,
    audited_actors,
    check_approval_by_id,
    check_denied_and_bad_arguments,
    check_elicited_delete,
    check_tools_and_reads,
    endpoints_audited,
    refusals_audited,
    texts,
    tool_names,
)
from tests._serve import served

SERVE = [
    "-c",
    "from closeguard.cli import main; main()",
    "mcp",
    "serve",
]


@asynccontextmanager
async def _gateway(
    args: list[str],
    env: dict[str, str],
    stderr: Path,
    name: str,
    user: Callable[..., object] | None = None,
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=[*SERVE, *args], env=env)
    with stderr.open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(
                read,
                write,
                elicitation_callback=user,  # type: ignore[arg-type]
                client_info=types.Implementation(name=name, version="1.0"),
            ) as session,
        ):
            await session.initialize()
            yield session


async def test_gateway_on_stdio_against_close(store: Store, tmp_path: Path) -> None:
    sim = Simulator(seed=11, leads=8, api_keys=[FAKE_KEY])
    policy = tmp_path / "mcp-test.yaml"
    policy.write_text(POLICY_YAML)
    stderr = tmp_path / "stderr.txt"
    out, user = Outputs(), User()
    async with served(sim.app) as base:
        env = {
            "CLOSE_API_KEY": FAKE_KEY,
            "CLOSE_BASE_URL": f"{base}/api/v1",
            "CLOSEGUARD_STORE_URL": str(store.url),
        }
        args = ["--policy", str(policy)]
        async with _gateway(args, env, stderr, CLIENT_NAME, user) as session:
            await check_tools_and_reads(session, sim, out)
            await check_denied_and_bad_arguments(session, sim, out)
            await check_elicited_delete(session, sim, user, store, out)
        async with _gateway(args, env, stderr, "no-elicitation-client") as session:
            await check_approval_by_id(session, sim, store, out)
    said = stderr.read_text()
    assert f"Close: Close at {base}/api/v1" in said
    out.add(said)
    out.assert_no(FAKE_KEY)
    assert {CLIENT_NAME, "no-elicitation-client"} <= audited_actors(store)
    assert "lead.delete" in endpoints_audited(store, CLIENT_NAME)
    assert refusals_audited(store, CLIENT_NAME) == REFUSED


async def test_without_a_key_it_serves_the_embedded_simulator(store: Store, tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.txt"
    env = {"CLOSEGUARD_STORE_URL": str(store.url)}
    args = ["--policy", "read-only", "--actor", "desk-bot"]
    async with _gateway(args, env, stderr, CLIENT_NAME) as session:
        assert await tool_names(session) == READ_ONLY_TOOLS
        listed = await session.call_tool("lead_list", {"limit": 3})
        assert not listed.is_error and '"data":[' in texts(listed)
    assert "embedded simulator (no CLOSE_API_KEY set" in stderr.read_text()
    assert audited_actors(store) == {"desk-bot"}
