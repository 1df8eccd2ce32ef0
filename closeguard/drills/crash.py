"""The crash drill: a worker process SIGKILLed at random points while a queue of runs
drains, restarted each time, on a SQLite store shared by every life.

The simulator is served on 127.0.0.1 from this process; each run of ``drill-crash``
creates one task through the effect journal, then reads it back. After ``kills`` kills a
last worker drains what is left. Figures: kills, kills that landed while runs were
unfinished, runs completed, runs with no task (lost) or with more than one (duplicated).
On PostgreSQL the queue is procrastinate's, as ``closeguard run`` uses it there.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from closeguard.drills._crash_worker import WORKFLOW
from closeguard.simulator import FaultConfig, Simulator
from closeguard.store import Store
from closeguard.store.effects import EffectRows
from closeguard.tools.errors import ConfigError
from closeguard.tools.serving import serve_on_socket
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue_pg import queue_for

__all__ = ["CrashFigures", "crash_drill"]


@dataclass
class CrashFigures:
    runs: int = 0
    kills: int = 0
    kills_mid_work: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)
    """Each lost or duplicated run: its lead, status, attempts, state and journal entry."""


async def _until(path: Path, process: asyncio.subprocess.Process, limit: float = 60) -> None:
    for _ in range(int(limit / 0.02)):
        if await asyncio.to_thread(path.exists) or process.returncode is not None:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the worker did not start within {limit:g}s")


async def crash_drill(
    folder: Path, *, kills: int = 50, runs: int = 100, seed: int = 0, store_url: str | None = None
) -> CrashFigures:
    """Run the drill in ``folder`` (a fresh directory) on ``store_url`` (an empty
    PostgreSQL database, whose queue is then procrastinate's; default: a SQLite file)."""
    rng = random.Random(seed)
    # Close's latency, as a worker meets it: with none, a worker drained the queue before
    # most kills landed (9 of 36 kills mid-work on SQLite; with it, 47 of 49)
    latency = FaultConfig.everywhere(latency_ms=20, jitter_ms=10)
    sim = Simulator(seed=seed, leads=runs, faults=latency)
    store_url = store_url or f"sqlite:///{folder / 'store.db'}"
    store = Store(store_url)
    inbox = Inbox(store, [WORKFLOW], queue_for(store))
    if await inbox.queue.list(limit=1):
        await asyncio.to_thread(store.dispose)
        raise ConfigError(
            "the crash drill needs an empty database: this one holds runs already, which it "
            "would count as lost or doubled (`closeguard drill all --pg SERVER` makes a "
            "scratch database)"
        )
    for i, lead_id in enumerate(sim.state["leads"]):
        event = {"id": f"ev_drill_{i}", "object_type": "lead", "action": "created"}
        await inbox.add({**event, "lead_id": lead_id, "data": {"id": lead_id}}, source="drill")
    figures = CrashFigures(runs=runs)
    env = {**os.environ}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    module = "closeguard.drills._crash_worker"
    args = ["-m", module, store_url, base, sim.api_key, str(folder)]
    async with serve_on_socket(sim.app, sock, lifespan="off", not_started=RuntimeError("sim")):
        for _ in range(kills):
            ready = folder / "ready"
            ready.unlink(missing_ok=True)
            process = await asyncio.create_subprocess_exec(sys.executable, *args, env=env)
            await _until(ready, process)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            if process.returncode is None:
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it drained the queue and ended just before the kill
                else:
                    figures.kills += 1
            await process.wait()
            left = await inbox.queue.list(status=("queued", "running"), limit=1)
            figures.kills_mid_work += bool(left)
        last = await asyncio.create_subprocess_exec(sys.executable, *args, env=env)
        if await asyncio.wait_for(last.wait(), 300) != 0:
            raise RuntimeError("the last worker failed")
    rows = await inbox.queue.list(limit=runs * 2)
    figures.completed = sum(r.status == "completed" for r in rows)
    tasks = sim.state["tasks"].values()
    per_lead = Counter(t["lead_id"] for t in tasks if str(t.get("text", "")).startswith("drill "))
    figures.lost = sum(1 for lead in sim.state["leads"] if per_lead[lead] == 0)
    figures.duplicated = sum(1 for lead in sim.state["leads"] if per_lead[lead] > 1)
    journal = EffectRows(store)
    for row in rows:
        lead = row.lead_id or ""
        if per_lead[lead] != 1:
            entry = journal.get(row.id, "task")
            effect = None if entry is None else (entry.status, entry.result)
            figures.failures.append(
                f"{per_lead[lead]} task(s) for run {row.id} ({row.status}, "
                f"{row.attempts} attempt(s), state {row.state}, journal {effect})"
            )
    await asyncio.to_thread(store.dispose)
    return figures
