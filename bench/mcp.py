"""MCP gateway benchmark (run by hand: ``.venv/bin/python bench/mcp.py [calls]``).

What the gateway adds to a call over the guarded client it wraps. ``closeguard mcp serve``
runs as a real subprocess on stdio (no Close key: its embedded simulator), driven by the
MCP SDK's ``ClientSession``; the baseline is the same read (``lead.get``) made directly
with a guarded ``CloseClient`` on an identical in-process simulator, same policy, same
kind of store. Calls alternate (direct, then over MCP) so both see the same machine load;
each pair gives one overhead sample (MCP time minus direct time). Printed: both latency
distributions and the overhead's median and p99. Target: overhead median <= 2 ms.

The MCP time includes the JSON-RPC round trip over two pipes, the SDK's server and client
dispatch, argument validation against the tool schema and the compact JSON result.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _yardstick import print_yardstick

# Run as a script, this file's folder is first on sys.path and this file would shadow the
# MCP SDK (``import mcp``): take the folder off before importing it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import mcp_types as types  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from closeguard.guardrails import Guarded, Policy  # noqa: E402
from closeguard.simulator import Simulator  # noqa: E402
from closeguard.store import Store  # noqa: E402

TARGET_MS = 2.0
SERVE = ["-c", "from closeguard.cli import main; main()", "mcp", "serve"]
POLICY = 'name: bench-mcp\ngrants: {"*": read}\n'
"""Reads only, no per-run call limit (a long bench must not hit a quota)."""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _line(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{label:<22} median {statistics.median(ms):7.3f} ms   p99 {_pct(ms, 0.99):7.3f} ms"


async def _bench(calls: int, tmp: Path) -> tuple[list[float], list[float]]:
    policy_file = tmp / "bench-mcp.yaml"
    policy_file.write_text(POLICY)
    env = {"CLOSEGUARD_STORE_URL": f"sqlite:///{tmp / 'gateway.db'}"}
    params = StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--policy", str(policy_file)],
        env=env,
    )
    store = Store(f"sqlite:///{tmp / 'direct.db'}")
    sim = Simulator(seed=7, leads=25)
    guarded = Guarded(Policy.load(policy_file), store=store)
    direct_lead = next(iter(sim.state["leads"]))
    direct: list[float] = []
    over_mcp: list[float] = []
    with (tmp / "stderr.txt").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(
                read, write, client_info=types.Implementation(name="bench", version="1")
            ) as session,
            sim.client(policy=guarded, actor="bench") as client,
        ):
            await session.initialize()
            listed = await session.call_tool("lead_list", {"limit": 1})
            text = listed.content[0]
            assert isinstance(text, types.TextContent), listed
            mcp_lead = json.loads(text.text)["data"][0]["id"]
            for i in range(calls + calls // 10):
                t0 = time.perf_counter()
                await client.call("lead.get", path_params={"id": direct_lead})
                t1 = time.perf_counter()
                result = await session.call_tool("lead_get", {"id": mcp_lead})
                t2 = time.perf_counter()
                if result.is_error:
                    raise SystemExit(f"MCP call failed: {result.content}")
                if i >= calls // 10:  # the first tenth warms both paths up
                    direct.append(t1 - t0)
                    over_mcp.append(t2 - t1)
    store.dispose()
    return direct, over_mcp


def main() -> int:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print_yardstick()
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}; {calls} calls each way")
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        direct, over_mcp = asyncio.run(_bench(calls, Path(tmp)))
    overhead = [m - d for d, m in zip(direct, over_mcp, strict=True)]
    print(_line("guarded client", direct))
    print(_line("through MCP (stdio)", over_mcp))
    print(_line("gateway overhead", overhead))
    median_ms = statistics.median(overhead) * 1000
    ok = median_ms <= TARGET_MS
    print(
        f"overhead median {median_ms:.3f} ms vs target <= {TARGET_MS:g} ms: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
