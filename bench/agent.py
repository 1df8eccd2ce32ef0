"""Agent benchmark (run by hand: ``.venv/bin/python bench/agent.py [calls] [rounds]``).

What the LangGraph agent adds per tool call: the same ``lead.get`` calls made once
through the agent (a scripted model, the in-process simulator, the SQLite checkpointer in
a temp dir, the guard with its audit log) and once directly on the same guarded client.
Overhead per call = (agent time - direct time) / calls, one figure per round (pairs back
to back, alternating order); the median is compared with the target (<= 3 ms).

Two shapes: ``sequential`` (one call per model turn: a model turn, review, tools and
three checkpoints per call) and ``batched`` (all calls in one model turn). The machine
must be quiet: the 1-minute load average is printed first.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _yardstick import print_yardstick

from closeguard.agent import Limits, build_agent, open_checkpointer, thread_config
from closeguard.agent.testing import call, scripted, turn
from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools import CloseClient

TARGET_MS = 3.0


def _turns(lead_ids: list[str], calls: int, batched: bool) -> list[dict[str, Any]]:
    picks = [lead_ids[i % len(lead_ids)] for i in range(calls)]
    if batched:
        return [turn("", *[call("lead_get", id=lead) for lead in picks]), turn("done")]
    return [*[turn("", call("lead_get", id=lead)) for lead in picks], turn("done")]


async def _direct(client: CloseClient, lead_ids: list[str], calls: int) -> float:
    started = time.perf_counter()
    for i in range(calls):
        await client.call("lead.get", path_params={"id": lead_ids[i % len(lead_ids)]})
    return time.perf_counter() - started


async def _agent(agent: Any, calls: int) -> float:
    config = thread_config(f"bench-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    result = await agent.ainvoke({"messages": [("user", "go")]}, config)
    elapsed = time.perf_counter() - started
    done = sum(1 for m in result["messages"] if getattr(m, "type", "") == "tool")
    assert done == calls and result["messages"][-1].content == "done", "agent run incomplete"
    return elapsed


async def measure(calls: int, rounds: int, batched: bool) -> list[float]:
    """Overhead per tool call, in ms, one figure per round."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'store.db'}")
        sim = Simulator(seed=1, leads=20, rate_limits=None)
        lead_ids = list(sim.state["leads"])
        policy = Guarded(Policy.load("read-only"), store=store)
        async with (
            open_checkpointer(Path(tmp) / "checkpoints.db") as saver,
            sim.client(policy=policy, actor="bench") as client,
        ):
            model = scripted(*_turns(lead_ids, calls, batched))
            agent = build_agent(
                model,
                policy,
                client,
                checkpointer=saver,
                limits=Limits(max_turns=calls + 2, max_tool_calls=calls),
            )
            await _agent(agent, calls)  # warm-up: imports, prompt context, tables
            await _direct(client, lead_ids, calls)
            out = []
            for r in range(rounds):
                if r % 2:
                    direct = await _direct(client, lead_ids, calls)
                    via = await _agent(agent, calls)
                else:
                    via = await _agent(agent, calls)
                    direct = await _direct(client, lead_ids, calls)
                out.append((via - direct) / calls * 1000)
        store.dispose()
    return out


def main() -> int:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    print_yardstick()
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}; {calls} calls x {rounds} rounds")
    ok = True
    for shape, batched in (("sequential", False), ("batched", True)):
        figures = asyncio.run(measure(calls, rounds, batched))
        median = statistics.median(figures)
        passed = median <= TARGET_MS
        ok = ok and passed
        print(
            f"{shape:>10}: overhead per tool call median {median:.2f} ms "
            f"(min {min(figures):.2f}, max {max(figures):.2f}); target <= {TARGET_MS} ms: "
            f"{'PASS' if passed else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
