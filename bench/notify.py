"""Notification latency (run by hand: ``.venv/bin/python bench/notify.py [requests]``).

From ``Approvals.request`` returning (the guard has stored the request; the run that asked
goes on) to the message arriving at an Apprise ``json://`` sink on 127.0.0.1, through the
whole path: the notifier's queue, the sales sentence read through a read-only guarded
client on the in-process simulator, recipients from the accounts in the store, Apprise's
delivery. Requests are made one at a time, each waited for, so the figure is latency, not
queueing. Targets: p50 <= 250 ms, p99 <= 1 s (a person is told within a second).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closeguard.guardrails import Accounts, Approvals, Guarded, Policy
from closeguard.notify import Describer, Notifier
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import classify
from tests._sinks import json_sink


async def measure(n: int) -> list[float]:
    store = Store(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cg-bench-')) / 'notify.db'}")
    sim = Simulator(seed=3, leads=10)
    async with sim.client() as raw:
        deals = (await raw.get("/opportunity/", params={"_limit": 10}))["data"]
    read_only = Guarded(Policy.load("read-only"), store=store)
    describer = Describer(lambda: sim.client(policy=read_only, actor="console"))
    approvals = Approvals(store)
    latencies = []
    with json_sink() as (url, received):
        Accounts(store).add("maria", roles=["sales-manager"], notify=[f"{url}/maria"])
        async with Notifier(store, describer=describer, remind_every=0) as notifier:
            for i in range(n):
                deal = deals[i % len(deals)]
                call = classify("PUT", f"/opportunity/{deal['id']}/", {"value": 1_000_000 + i})
                started = time.perf_counter()
                approvals.request(
                    call,
                    method="PUT",
                    path=f"/opportunity/{deal['id']}/",
                    approvers=("sales-manager",),
                )
                got = await asyncio.to_thread(received.wait_for, i + 1, 10.0)
                if len(got) <= i:
                    raise SystemExit(f"request {i} never reached the sink")
                latencies.append(received.items[i][2] - started)
            await notifier.drain(10)
    return latencies


def line(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    print(f"notify  {label:<40} {value:>12}   {target:<12} {verdict}")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    line(f"load average, 1 min ({os.cpu_count()} cores)", f"{os.getloadavg()[0]:.2f}", "quiet")
    latencies = sorted(asyncio.run(measure(n)))
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    line(f"request -> sink, p50 of {n}", f"{p50:.1f} ms", "<= 250 ms", p50 <= 250)
    line(f"request -> sink, p99 of {n}", f"{p99:.1f} ms", "<= 1000 ms", p99 <= 1000)
    line("request -> sink, max", f"{latencies[-1] * 1000:.1f} ms")
    return 0 if p50 <= 250 and p99 <= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
