"""What a request costs the client: requests/s and CPU per request of ``CloseClient``.

    .venv/bin/python bench/client.py [--requests 4000] [--rounds 5]

The mix is what a workflow run sends (``new-lead-triage`` and its read-backs): list a
lead's tasks (one page), update the lead, create a task, get the lead; each typed (the
accessors validate arguments and read the answer into the models).

1. ``client``: ``CloseClient`` over ``httpx.MockTransport`` answering each request with
   the bytes the simulator gave for it (taken once before timing), so the figure is the
   client's own work: build, send, decode, read. Target: CPU per request at most 70% of
   ``BEFORE`` (the same mix on the code before issue 23's client changes), scaled by the
   yardstick (see below).
2. ``guarded``: the same through the guard (``Guarded``: policy, quotas, the audit log on a
   temp SQLite store, written on the store's thread; its CPU is counted), as every workflow
   request goes.
3. ``simulator``: the same mix against the in-process simulator (``httpx.ASGITransport``),
   to show the client's share of an end-to-end request.

Figures are process CPU time (all threads) and wall time around ``--requests`` requests,
the median of ``--rounds`` rounds. The yardstick, a fixed pure-Python workload (JSON
encoding and decoding, hashing), is timed first: it says how fast the machine is now, and
the target scales the before figure by now/then. Run on a quiet machine (the load average
is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import BASE_URL, Simulator
from closeguard.store import Store
from closeguard.tools.client import CloseClient

BEFORE = {"yardstick_ms": 64.3, "client_us": 255.4, "guarded_us": 299.6, "simulator_us": 481.2}
"""The same mix on the code before issue 23's client changes, on the 2-core development
machine (load average 10-15: the medians of three runs alternated with the new code's)."""
TARGET_SHARE = 0.70
POLICY = Policy.from_dict(
    {
        "name": "bench-client",
        "grants": {"lead": "write", "task": "write"},
        "limits": {"per_run": {"writes": 10_000_000, "calls": 10_000_000}},
    }
)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def yardstick() -> float:
    """Milliseconds of CPU for a fixed pure-Python workload (best of three)."""
    doc = {
        "id": "lead_x",
        "items": [{"n": i, "text": f"row {i}", "ok": i % 2 == 0} for i in range(200)],
    }
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for i in range(300):
            text = json.dumps(doc)
            json.loads(text)
            hashlib.sha256(text.encode()).hexdigest()
            sorted(str(k * i) for k in range(200))
        best = min(best, time.process_time() - start)
    return best * 1e3


Step = Callable[[CloseClient], Awaitable[Any]]


def mix(lead_id: str, other_id: str, user_id: str) -> list[Step]:
    """One round of the workflow-like mix, as typed calls (tasks are created on another
    lead than the one listed, so the listed page stays the same size)."""
    return [
        lambda c: c.tasks.list(lead_id=lead_id, limit=100),
        lambda c: c.leads.update(lead_id, {"description": "triaged"}),
        lambda c: c.tasks.create(
            {"lead_id": other_id, "assigned_to": user_id, "text": "Intro call: bench"}
        ),
        lambda c: c.leads.get(lead_id),
    ]


async def recorded(sim: Simulator, steps: list[Step]) -> dict[tuple[str, str], bytes]:
    """The simulator's answer to each request of the mix, by method and path."""
    answers: dict[tuple[str, str], bytes] = {}
    inner = sim.transport()

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await inner.handle_async_request(request)
            body = await response.aread()
            answers[(request.method, request.url.path)] = body
            return httpx.Response(response.status_code, headers=response.headers, content=body)

    async with CloseClient(sim.api_key, base_url=BASE_URL, transport=Recording()) as client:
        for step in steps:
            await step(client)
    return answers


def replaying(answers: dict[tuple[str, str], bytes]) -> httpx.MockTransport:
    headers = [(b"content-type", b"application/json")]

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers=headers, content=answers[(request.method, request.url.path)]
        )

    return httpx.MockTransport(answer)


async def timed(client: CloseClient, steps: list[Step], requests: int) -> tuple[float, float]:
    """CPU and wall seconds for ``requests`` requests of the mix, the client closed inside."""
    rounds = requests // len(steps)
    cpu, wall = time.process_time(), time.perf_counter()
    async with client:
        for _ in range(rounds):
            for step in steps:
                await step(client)
    return time.process_time() - cpu, time.perf_counter() - wall


async def measure(kind: str, requests: int, rounds: int, folder: Path) -> tuple[float, float]:
    """Median CPU microseconds per request and requests/s for ``kind``."""
    sim = Simulator(seed=7, leads=3)
    lead_id, other_id = list(sim.state["leads"])[:2]
    user_id = next(iter(sim.state["users"]))
    steps = mix(lead_id, other_id, user_id)
    answers = await recorded(sim, steps)
    cpus: list[float] = []
    rates: list[float] = []
    for index in range(rounds + 1):
        store: Store | None = None
        policy = None
        if kind == "guarded":
            store = Store(f"sqlite:///{folder / f'{kind}-{index}.db'}")
            policy = Guarded(POLICY, store=store, triggered_leads={lead_id, other_id})
        transport: httpx.AsyncBaseTransport = (
            sim.transport() if kind == "simulator" else replaying(answers)
        )
        client = CloseClient(
            sim.api_key,
            base_url=BASE_URL,
            transport=transport,
            policy=policy,
            actor="bench",
            run_id=f"run_{index}",
        )
        cpu, wall = await timed(client, steps, requests)
        if store is not None:
            store.dispose()
        if index == 0:
            continue  # warm-up
        sent = requests // len(steps) * len(steps)
        cpus.append(cpu / sent * 1e6)
        rates.append(sent / wall)
    return statistics.median(cpus), statistics.median(rates)


async def run(requests: int, rounds: int) -> int:
    print(f"load average: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} cores)")
    stick = yardstick()
    print(
        f"yardstick: {stick:.1f} ms CPU (fixed workload; before: {BEFORE['yardstick_ms']:.1f} ms)"
    )
    scale = stick / BEFORE["yardstick_ms"] if BEFORE["yardstick_ms"] else 1.0
    ok = True
    with tempfile.TemporaryDirectory(prefix="closeguard-bench-client-") as tmp:
        for kind in ("client", "guarded", "simulator"):
            cpu, rate = await measure(kind, requests, rounds, Path(tmp))
            before = BEFORE[f"{kind}_us"]
            line = f"{kind:9s} {cpu:7.1f} us CPU/request  {rate:8.0f} requests/s"
            if before:
                scaled = before * scale
                line += f"  before {before:.1f} us (x{scale:.2f} for this machine: {scaled:.1f})"
                line += f", now {cpu / scaled:.0%} of it"
                if kind == "client":
                    target = scaled * TARGET_SHARE
                    passed = cpu <= target
                    ok = ok and passed
                    line += f"; target <= {target:.1f} us: {verdict(passed)}"
            print(line)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.requests, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
