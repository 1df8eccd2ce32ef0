"""Runs per second with 1, 2 and 4 worker processes on PostgreSQL, and 1 on SQLite.

Each run of the ``scale-call`` workflow (``tests/_scale_proc.py``) makes ``--calls`` GETs
to a served simulator that adds 50 ms of latency to every call, so workers wait on Close
as they do in life. For each setup: a fresh store (a new PostgreSQL database, dropped
after; a temp SQLite file), ``--runs`` runs queued through the inbox, worker processes
(``--lanes`` runs at a time each) started and ready, then the clock runs from the moment
the runs are let go until every run is completed. Target: 4 workers >= 3x one worker.

    .venv/bin/python bench/scale.py [--runs 240] [--calls 3] [--lanes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from closeguard.simulator import Simulator
from closeguard.simulator.faults import FaultConfig
from closeguard.simulator.ratelimit import RateLimits
from closeguard.store import Store
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue_pg import queue_for
from tests._pg import fresh_database
from tests._scale_cluster import Cluster, prepare
from tests._scale_proc import WORKFLOWS
from tests._serve import served

TARGET = 3.0


def _count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


async def measure(url: str, workers: int, args: argparse.Namespace, base: str, key: str) -> float:
    """Runs per second of ``workers`` processes on the store at ``url``."""
    store = prepare(url)
    folder = Path(tempfile.mkdtemp(prefix="cg-scale-"))
    env = {
        "CG_API_KEY": key,
        "CG_BASE_URL": base + "/api/v1",
        "CG_CALLS": str(args.calls),
        "CG_CONCURRENCY": str(args.lanes),
        "CG_LEASE": "30",
    }
    cluster = Cluster(folder, url, **env)
    done = "SELECT count(*) FROM runs WHERE status IN ('completed', 'failed', 'dead')"
    try:
        cluster.start("worker", "scale-call", count=workers)
        inbox = Inbox(store, [WORKFLOWS["scale-call"]], queue_for(store))
        events = [
            {"id": f"ev_{i}", "object_type": "lead", "action": "updated", "lead_id": f"lead_{i}"}
            for i in range(args.runs)
        ]
        started = time.perf_counter()
        await inbox.add_many([{**e, "data": {"lead_id": e["lead_id"]}} for e in events], source="b")
        while _count(store, done) < args.runs:  # noqa: ASYNC110 (another process settles)
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        cluster.close()
    failed = args.runs - _count(store, "SELECT count(*) FROM runs WHERE status = 'completed'")
    store.dispose()
    if failed:
        raise SystemExit(f"{failed} runs did not complete; see {folder}")
    return args.runs / elapsed


async def main(args: argparse.Namespace) -> int:
    latency = FaultConfig.everywhere(latency_ms=50.0)
    sim = Simulator(seed=1, leads=5, rate_limits=RateLimits(rps=100_000), faults=latency)
    rows: list[tuple[str, int, float]] = []
    async with served(sim.app) as base:
        for workers in (1, 2, 4):
            with fresh_database() as url:
                rows.append(
                    ("PostgreSQL", workers, await measure(url, workers, args, base, sim.api_key))
                )
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/store.db"
            rows.append(("SQLite", 1, await measure(url, 1, args, base, sim.api_key)))
    one = rows[0][2]
    print(f"{args.runs} runs x {args.calls} calls of 50 ms, {args.lanes} lanes per worker")
    print(f"{'store':<11} {'workers':>7} {'runs/s':>8} {'vs 1 PG':>8}")
    for store, workers, rate in rows:
        print(f"{store:<11} {workers:>7} {rate:>8.1f} {rate / one:>7.2f}x")
    ratio = rows[2][2] / one
    ok = ratio >= TARGET
    print(
        f"4 workers / 1 worker = {ratio:.2f}x (target >= {TARGET:g}x): {'PASS' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


def parse(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=240)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--lanes", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
