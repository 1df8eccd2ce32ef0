"""``closeguard mcp serve --transport http`` as a real process: banner, a call with the Bearer
token (``CLOSEGUARD_MCP_TOKEN``, or the one made for the run), a clean stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from closeguard.store import Store
from tests._mcp import texts

SERVE = [sys.executable, "-c", "from closeguard.cli import main; main()", "mcp", "serve"]


@pytest.mark.parametrize("shared", ["operator-chosen-token-1234", None])
async def test_http_serve_then_sigterm_keeps_the_embedded_world(
    store: Store, tmp_path: Path, shared: str | None
) -> None:
    env = {"CLOSEGUARD_STORE_URL": str(store.url), "PATH": "/usr/bin:/bin"}
    if shared is not None:
        env["CLOSEGUARD_MCP_TOKEN"] = shared
    proc = await asyncio.create_subprocess_exec(
        *SERVE,
        *("--policy", "sales-rep", "--transport", "http", "--port", "0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        token = shared
        if shared is None:
            made = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert "no CLOSEGUARD_MCP_TOKEN and no account" in made
            token = made.split("Bearer ", 1)[1].split("'", 1)[0]
        first = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        second = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert "policy 'sales-rep', 46 tools" in first and "embedded simulator" in first
        url = second.strip().rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with httpx.AsyncClient() as plain:
            assert (await plain.post(url, json={})).status_code == 401
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with (
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(
                read, write, client_info=types.Implementation(name="cli-test", version="1")
            ) as session,
        ):
            await session.initialize()
            made = await session.call_tool("lead_create", {"name": "Kept Across Restarts"})
            assert not made.is_error, texts(made)
            lead_id = json.loads(texts(made))["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    assert await proc.stdout.read() == b""
    world = json.loads((tmp_path / "mcp-world.json").read_text())
    assert lead_id in json.dumps(world)
