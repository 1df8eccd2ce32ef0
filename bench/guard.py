"""Guard benchmark (run by hand: ``.venv/bin/python bench/guard.py [calls] [rounds]``).

1. Decision time: median of ``Guard.check(call)`` over a mix of catalog calls (target
   <= 20 us), and of classify + check (what the transport does per request); the same
   again with ``when`` rules on the deal and lead updates of the mix (``POLICY_WHEN``),
   whose calls then leave the remembered fast path.
2. Audit cost: microseconds per row to append a batch and flush it (format, hash, insert,
   commit), and the whole guard's overhead per request over a no-op backend.
3. Throughput: the same calls through ``CloseClient`` against the in-process simulator,
   unguarded vs guarded (policy + audit log on a temp SQLite store); target >= 90 %.
   The timer stops when the client is closed, i.e. after the guard's last audit batch is
   committed, and the bench checks that every call's row is in the store by then, and that
   no batch was written on the event loop's thread (the guard writes on the store's).
   ``rounds`` rounds (unguarded, guarded and the reference of 4., back to back, each in
   turn first) give one ratio each; the median is the figure, and the spread is printed
   beside it.
4. The audit log alone, as a reference measured in the same rounds (not judged): a
   transport that only writes each call's row to the same chain (``AuditLog.record``, the
   flush at close) and decides nothing. It is the part of the guard no policy can drop
   (every call, allowed or not, is audited), so ``audit log alone / unguarded`` is the
   most the guarded ratio could reach with a decision that cost nothing, and ``guarded /
   audit log alone`` is what classifying, deciding and counting cost on top of it.

The machine must be quiet: on 2 cores, another busy process moves the ratio by several
points either way. The 1-minute load average is printed first; rerun when it is high.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _yardstick import print_yardstick

from closeguard.guardrails import AuditLog, Guard, Guarded, Policy, RunContext
from closeguard.guardrails.audit import EMPTY_ROW
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.store.audit import AuditRows
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

POLICY_WHEN = (
    (
        POLICY
        + """
approvers: {opportunity.update: [sales-manager]}
"""
    )
    .replace(
        "approve: [destructive]",
        """approve:
  - destructive
  - endpoint: opportunity.update
    when: {any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]}""",
    )
    .replace(
        "deny: [lead.delete]",
        """deny:
  - lead.delete
  - endpoint: lead.update
    when: {status_label: {in: [Bad Fit]}}""",
    )
)
STATUSES = {"stat_won": {"label": "Won", "type": "won"}, "stat_bad": {"label": "Bad Fit"}}

CALLS = [
    ("GET", "/lead/lead_1/", None, {}),
    ("GET", "/lead/", None, {"_limit": "10"}),
    ("POST", "/activity/email/", {"lead_id": "lead_1", "status": "draft"}, {}),
    ("POST", "/activity/email/", {"lead_id": "lead_1", "status": "outbox"}, {}),
    ("POST", "/task/", {"lead_id": "lead_1", "text": "t"}, {}),
    ("DELETE", "/lead/lead_1/", None, {}),
    ("PUT", "/opportunity/oppo_1/", {"value": 1}, {}),
    ("PUT", "/opportunity/oppo_1/", {"status_id": "stat_won"}, {}),
    ("PUT", "/lead/lead_1/", {"status_id": "stat_bad"}, {}),
    ("GET", "/nope/", None, {}),
]

ROW = {
    **EMPTY_ROW,
    "actor": "bench",
    "run_id": "r1",
    "call_id": "0" * 32,
    "attempt": 1,
    "policy": "bench",
    "endpoint": "lead.get",
    "method": "GET",
    "path": "/lead/lead_1/",
    "access": "read",
    "decision": "allow",
    "rule": "grants.*",
    "reason": "read granted",
    "args": '{"body":{},"params":{}}',
    "status_code": 200,
    "latency_us": 180,
}


def bench_decisions(policy: str = POLICY, rounds: int = 20_000) -> tuple[float, float]:
    guard = Guard(Policy.from_yaml(policy))
    guard.learn_statuses(STATUSES)
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
            guard.decide_request(m, p, b, q, ctx)
            full_ns.append(time.perf_counter_ns() - t0)
    return statistics.median(check_ns) / 1000, statistics.median(full_ns) / 1000


def bench_audit_rows(batch: int = 550, repeats: int = 20) -> float:
    """Median microseconds per row to append a batch and flush it: format, hash, insert,
    commit (550 rows: one guarded run's worth)."""
    store = Store(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cg-bench-')) / 'audit.db'}")
    log = AuditLog(store, max_delay=3600)
    timings = []
    for _ in range(repeats):
        rows = [{**ROW, "call_id": f"{i:032x}", "latency_us": i} for i in range(batch)]
        t0 = time.perf_counter()
        for row in rows:
            log.append(row)
        log.flush()
        timings.append((time.perf_counter() - t0) / batch * 1e6)
    assert log.verify().ok
    return statistics.median(timings)


async def workload(client: CloseClient, lead: str, n: int) -> None:
    for i in range(n):
        await client.get(f"/lead/{lead}/")
        if i % 4 == 0:
            await client.post("/activity/note/", json={"lead_id": lead, "note": f"n{i}"})
        if i % 8 == 0:
            await client.get("/activity/", params={"lead_id": lead, "_limit": 5})


class _AuditOnly(httpx.AsyncBaseTransport):
    """Sends every request unchecked and writes its audit row, as the guard's hot path
    does (``AuditLog.record``, the batch committed on the store's thread at close)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, audit: AuditLog, run_id: str) -> None:
        self.inner, self.audit, self.run_id = inner, audit, run_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        meta = request.extensions["closeguard"]
        response = await self.inner.handle_async_request(request)
        status = response.status_code
        self.audit.record(
            (
                "bench",
                self.run_id,
                meta["call_id"],
                meta["attempt"],
                "audit-only",
                None,
                request.method,
                request.url.path,
                None,
                "allow",
                None,
                None,
                request.content.decode() or "{}",
                status,
                int((time.perf_counter() - started) * 1e6),
                None,
                None,
            )
        )
        return response

    async def aclose(self) -> None:
        await self.audit.aflush()
        await self.inner.aclose()


@dataclass
class AuditOnly:
    """The ``TransportGuard`` of the reference: ``_AuditOnly`` on a log of ``store``."""

    store: Store

    def wrap(
        self, transport: httpx.AsyncBaseTransport, *, actor: str | None, run_id: str | None
    ) -> httpx.AsyncBaseTransport:
        return _AuditOnly(transport, AuditLog(self.store), run_id or "")


@dataclass
class Throughput:
    """Per round: calls/s unguarded and guarded, their ratio, the same ratio by CPU time,
    and the audit-only reference's ratios."""

    plain: list[float] = field(default_factory=list)
    guarded: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    audit_only: list[float] = field(default_factory=list)
    """Audit log alone / unguarded, per round."""
    over_audit: list[float] = field(default_factory=list)
    """Guarded / audit log alone, per round."""
    unwritten: int = 0
    rows: int = 0
    chain_ok: bool = False
    on_loop: int = 0
    writes: int = 0


async def timed_run(sim: Simulator, lead: str, n: int, **kwargs: Any) -> tuple[float, float]:
    """Wall and CPU seconds from the first call until the client is closed, which for a
    guarded client is when its last audit batch is committed."""
    client = sim.client(**kwargs)
    t0, c0 = time.perf_counter(), time.process_time()
    async with client:
        await workload(client, lead, n)
    return time.perf_counter() - t0, time.process_time() - c0


_ORDERS = (
    ("plain", "guarded", "audit"),
    ("guarded", "audit", "plain"),
    ("audit", "plain", "guarded"),
)
"""Each round runs the three back to back, in turn first, second and last."""


async def bench_throughput(n: int, rounds: int) -> Throughput:
    """Rounds of runs on fresh, identical organizations, after one warm-up round; one ratio
    per round, so load that drifts between rounds mostly cancels."""
    store = Store(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cg-bench-')) / 'bench.db'}")
    audit = AuditLog(store)
    policy = Guarded(Policy.from_yaml(POLICY), store=store)
    calls = n + (n + 3) // 4 + (n + 7) // 8
    result = Throughput()
    loop_thread = threading.current_thread()
    append = AuditRows.append

    def watched(self: AuditRows, *args: Any) -> None:
        result.writes += 1
        result.on_loop += threading.current_thread() is loop_thread
        append(self, *args)

    AuditRows.append = watched  # type: ignore[method-assign,assignment]
    reference = AuditOnly(store)
    for r in range(rounds + 1):
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for kind in _ORDERS[r % len(_ORDERS)]:
            # No rate limits: this times the guard, not the pacing.
            sim = Simulator(seed=1, leads=20, rate_limits=None)
            async with sim.client() as c:
                lead = (await c.get("/lead/"))["data"][0]["id"]
            before = audit.head()[0]
            kwargs: dict[str, Any] = {}
            if kind != "plain":
                kwargs = {"policy": policy if kind == "guarded" else reference}
                kwargs.update(actor="bench", run_id=f"r{r}")
            wall[kind], cpu[kind] = await timed_run(sim, lead, n, **kwargs)
            if kind == "guarded":
                result.unwritten += calls - (audit.head()[0] - before)
        if r == 0:
            continue
        result.plain.append(calls / wall["plain"])
        result.guarded.append(calls / wall["guarded"])
        result.ratios.append(wall["plain"] / wall["guarded"])
        result.cpu_ratios.append(cpu["plain"] / cpu["guarded"])
        result.audit_only.append(wall["plain"] / wall["audit"])
        result.over_audit.append(wall["audit"] / wall["guarded"])
    AuditRows.append = append  # type: ignore[method-assign]
    report = audit.verify()
    result.rows, result.chain_ok = report.rows, report.ok
    return result


class _Noop(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.answer = httpx.Response(200, content=b"{}")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.answer


async def bench_overhead(n: int = 5000) -> float:
    """Microseconds the guard transport adds per request (classify, decide, quota, audit
    rows committed) over a no-op backend."""
    store = Store(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cg-bench-')) / 'overhead.db'}")
    guarded = Guarded(Policy.from_yaml(POLICY), store=store).wrap(_Noop(), actor="b", run_id="r")
    base = "https://api.close.com/api/v1"
    requests = [
        httpx.Request("GET", f"{base}/lead/lead_1/"),
        httpx.Request("POST", f"{base}/activity/note/", json={"lead_id": "lead_1", "note": "hi"}),
    ]
    timings = []
    for transport in (_Noop(), guarded):
        t0 = time.perf_counter()
        for i in range(n):
            requests[i % 2].extensions["closeguard"] = {"call_id": str(i), "attempt": 1}
            await transport.handle_async_request(requests[i % 2])
        await transport.aclose()
        timings.append((time.perf_counter() - t0) / n * 1e6)
    return timings[1] - timings[0]


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def line(area: str, label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{area:<9} {label:<38} {value:>14}   {target:<16} {verdict}")


def spread(values: list[float]) -> str:
    return f"{min(values):.1%}-{max(values):.1%}"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    print_yardstick()
    line(
        "machine",
        f"load average, 1 min ({os.cpu_count()} cores)",
        f"{os.getloadavg()[0]:.2f}",
        "quiet needed",
    )
    check_us, full_us = bench_decisions()
    line("decision", "Guard.check median", f"{check_us:.2f} us", "<= 20 us", check_us <= 20)
    line("decision", "decide_request median (transport)", f"{full_us:.2f} us")
    when_us, when_full_us = bench_decisions(POLICY_WHEN)
    line(
        "decision", "Guard.check median, when rules", f"{when_us:.2f} us", "<= 20 us", when_us <= 20
    )
    line("decision", "decide_request median, when rules", f"{when_full_us:.2f} us")
    line("audit", "append + flush, per row", f"{bench_audit_rows():.2f} us")
    overhead = asyncio.run(bench_overhead())
    line("transport", "guard overhead per request (no-op)", f"{overhead:.1f} us")
    t = asyncio.run(bench_throughput(n, rounds))
    ratio = statistics.median(t.ratios)
    line("e2e", "unguarded, median", f"{statistics.median(t.plain):.0f} calls/s")
    line("e2e", "guarded (audit committed), median", f"{statistics.median(t.guarded):.0f} calls/s")
    line(
        "e2e",
        f"guarded/unguarded, median of {len(t.ratios)} rounds",
        f"{ratio:.1%}",
        ">= 90 %",
        ratio >= 0.9,
    )
    line("e2e", "  rounds ranged", spread(t.ratios))
    line(
        "e2e",
        "  same by CPU time (median, range)",
        f"{statistics.median(t.cpu_ratios):.1%}",
        spread(t.cpu_ratios),
    )
    line(
        "e2e",
        "  audit log alone / unguarded (ref.)",
        f"{statistics.median(t.audit_only):.1%}",
        spread(t.audit_only),
    )
    line(
        "e2e",
        "  guarded / audit log alone (ref.)",
        f"{statistics.median(t.over_audit):.1%}",
        spread(t.over_audit),
    )
    line(
        "audit", "rows not committed when the timer stops", str(t.unwritten), "0", t.unwritten == 0
    )
    line("audit", "rows in the chain", str(t.rows), "chain intact", t.chain_ok)
    line(
        "audit",
        "batch writes on the event loop's thread",
        f"{t.on_loop} of {t.writes}",
        "0",
        t.on_loop == 0,
    )
    ok = (
        check_us <= 20
        and when_us <= 20
        and ratio >= 0.9
        and t.unwritten == 0
        and t.chain_ok
        and not t.on_loop
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
