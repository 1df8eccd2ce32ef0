"""Guard benchmark (run by hand: ``.venv/bin/python bench/guard.py``).

1. Decision time: median of ``Guard.check(call)`` over a mix of catalog calls (target
   <= 20 us), and of classify + check (what the transport does per request).
2. Throughput: the same calls through ``CloseClient`` against the in-process simulator,
   unguarded vs guarded (policy + audit log on a temp SQLite store); target >= 90 %.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from closeguard.guardrails import AuditLog, Guard, Policy, RunContext
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.client import CloseClient

POLICY = """
name: bench
grants: {"*": read, lead: write, activity.note: write, task: write, activity.email: write}
deny: [lead.delete]
approve: [destructive]
constraints:
  activity.email.create:
    status: {in: [draft], required: true}
  task.create:
    text: {required: true}
limits:
  per_run: {writes: 100000}
"""

CALLS = [
    ("GET", "/lead/lead_1/", None, {}),
    ("GET", "/lead/", None, {"_limit": "10"}),
    ("POST", "/activity/email/", {"lead_id": "lead_1", "status": "draft"}, {}),
    ("POST", "/activity/email/", {"lead_id": "lead_1", "status": "outbox"}, {}),
    ("POST", "/task/", {"lead_id": "lead_1", "text": "t"}, {}),
    ("DELETE", "/lead/lead_1/", None, {}),
    ("PUT", "/opportunity/oppo_1/", {"value": 1}, {}),
    ("GET", "/nope/", None, {}),
]


def bench_decisions(rounds: int = 20_000) -> tuple[float, float]:
    guard = Guard(Policy.from_yaml(POLICY))
    ctx = RunContext(actor="bench", run_id="r", triggered_leads=frozenset({"lead_1"}))
    classified = [classify(m, p, b, q) for m, p, b, q in CALLS if p != "/nope/"]
    check_ns, full_ns = [], []
    for _ in range(rounds):
        for call in classified:
            t0 = time.perf_counter_ns()
            guard.check(call, ctx)
            check_ns.append(time.perf_counter_ns() - t0)
        for m, p, b, q in CALLS:
            t0 = time.perf_counter_ns()
            guard.check_request(m, p, b, q, ctx)
            full_ns.append(time.perf_counter_ns() - t0)
    return statistics.median(check_ns) / 1000, statistics.median(full_ns) / 1000


async def workload(client: CloseClient, lead: str, n: int) -> None:
    for i in range(n):
        await client.get(f"/lead/{lead}/")
        if i % 4 == 0:
            await client.post("/activity/note/", json={"lead_id": lead, "note": f"n{i}"})
        if i % 8 == 0:
            await client.get("/activity/", params={"lead_id": lead, "_limit": 5})


async def bench_throughput(n: int, repeats: int) -> tuple[float, float, int]:
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    store = Store(f"sqlite:///{tmp / 'bench.db'}")
    policy = Policy.from_yaml(POLICY).bind(store=store)
    calls_per_run = n + (n + 3) // 4 + (n + 7) // 8
    plain_rates, guarded_rates = [], []
    for r in range(repeats):
        for guarded in (False, True) if r % 2 == 0 else (True, False):
            # A fresh, identical org for every timed run; no rate limits: this times the guard.
            sim = Simulator(seed=1, leads=20, rate_limits=None)
            async with sim.client() as c:
                lead = (await c.get("/lead/"))["data"][0]["id"]
            kwargs = {"policy": policy, "actor": "bench", "run_id": f"r{r}"} if guarded else {}
            async with sim.client(**kwargs) as client:
                t0 = time.perf_counter()
                await workload(client, lead, n)
                elapsed = time.perf_counter() - t0
            (guarded_rates if guarded else plain_rates).append(calls_per_run / elapsed)
    rows = AuditLog(store)
    report = rows.verify()
    assert report.ok, report.problems
    return statistics.median(plain_rates), statistics.median(guarded_rates), report.rows


class _Noop(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.answer = httpx.Response(200, content=b"{}")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.answer


async def bench_overhead(n: int = 5000) -> float:
    """Microseconds the guard transport adds per request (classify, decide, quota, audit)."""
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    store = Store(f"sqlite:///{tmp / 'overhead.db'}")
    guarded = Policy.from_yaml(POLICY).bind(store=store).wrap(_Noop(), actor="b", run_id="r")
    plain = _Noop()
    base = "https://api.close.com/api/v1"
    requests = [
        httpx.Request("GET", f"{base}/lead/lead_1/"),
        httpx.Request("POST", f"{base}/activity/note/", json={"lead_id": "lead_1", "note": "hi"}),
    ]
    for r in requests:
        r.extensions["closeguard"] = {"call_id": "c", "attempt": 1}
    timings = []
    for transport in (plain, guarded):
        t0 = time.perf_counter()
        for i in range(n):
            requests[i % 2].extensions["closeguard"] = {"call_id": str(i), "attempt": 1}
            await transport.handle_async_request(requests[i % 2])
        timings.append((time.perf_counter() - t0) / n * 1e6)
    await guarded.aclose()
    return timings[1] - timings[0]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    check_us, full_us = bench_decisions()
    print(f"decision  Guard.check median                {check_us:8.2f} us   (target <= 20 us)")
    print(f"decision  classify + check median           {full_us:8.2f} us")
    overhead = asyncio.run(bench_overhead())
    print(f"transport guard overhead per request      {overhead:8.1f} us   (no-op backend)")
    plain, guarded, audited = asyncio.run(bench_throughput(n, repeats=7))
    print(f"e2e       unguarded (simulator)             {plain:8.0f} calls/s")
    print(f"e2e       guarded (+audit on SQLite)        {guarded:8.0f} calls/s")
    print(f"e2e       ratio guarded/unguarded           {guarded / plain:8.1%}   (target >= 90 %)")
    print(f"audit     rows written and verified         {audited:8d}")


if __name__ == "__main__":
    main()
