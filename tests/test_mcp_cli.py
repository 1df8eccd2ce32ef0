"""``closeguard mcp serve --transport http`` as a real process: banner, a call, a clean stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import mcp_types as types
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from closeguard.store import Store
from tests._mcp import texts

SERVE = [sys.executable, "-c", "from closeguard.cli import main; main()", "mcp", "serve"]


async def test_http_serve_then_sigterm_keeps_the_embedded_world(
    store: Store, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *SERVE,
        *("--policy", "sales-rep", "--transport", "http", "--port", "0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"CLOSEGUARD_STORE_URL": str(store.url), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        second = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
        assert "policy 'sales-rep', 46 tools" in first and "embedded simulator" in first
        url = second.strip().rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with (
            streamable_http_client(url) as (read, write),
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
