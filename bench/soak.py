"""Soak: the served runtime at a steady delivery rate for minutes, with the guard, the
audit log and the workers on; memory and latency at the start and at the end.

    .venv/bin/python bench/soak.py [--rate 50] [--minutes 10] [--window 60]

The rig is bench/webhooks.py's latency part (receiver on 127.0.0.1, signed ``lead.created``
deliveries from a paced child process, ``new-lead-triage`` writing to the in-process
simulator through its guard, audited), run for ``--minutes``. Reported for the first and
the last ``--window`` seconds: delivery -> first write latency (p50, p99, max) and the
process's resident memory (VmRSS); and whether every delivery was answered 200 and every
lead got exactly one intro task. Run by hand (not in CI): 10 minutes at 50/s is 30,000
leads, created in the simulator before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from webhooks import KEY, _paced_sender, percentile, signed_request

from closeguard.agent.runtime import open_checkpointer
from closeguard.guardrails import AuditLog, Policy
from closeguard.simulator import BASE_URL, Simulator
from closeguard.store import Store
from closeguard.store.cursors import Cursors, StoredSubscription
from closeguard.workflows.definition import Workflow
from closeguard.workflows.loader import packaged_workflows
from closeguard.workflows.runtime import Runtime, RuntimeConfig


def soak_triage() -> Workflow:
    """``new-lead-triage`` with its hourly write limit (1,000) raised: 50 deliveries/s is
    180,000 runs an hour, and the shipped limit would refuse every run after the 1,000th."""
    text = (files("closeguard.guardrails") / "policies" / "new-lead-triage.yaml").read_text()
    data = yaml.safe_load(text)
    data["limits"]["per_window"]["writes"] = 10_000_000
    return replace(packaged_workflows()["new-lead-triage"], policy=Policy.from_dict(data))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_memory(into: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append((time.monotonic(), rss_mb()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def soak(rate: float, seconds: float, window: float, folder: Path) -> bool:
    count = int(rate * seconds)
    landed: dict[str, float] = {}
    all_landed = asyncio.Event()

    def on_event(event: Mapping[str, Any]) -> None:
        if event.get("object_type") == "task" and event.get("action") == "created":
            landed.setdefault(str(event.get("lead_id")), time.monotonic())
            if len(landed) >= count:
                all_landed.set()

    sim = Simulator(seed=9, leads=5, rate_limits=None, on_event=on_event)
    print(f"creating {count} leads in the simulator ...", flush=True)
    async with sim.client() as client:
        for i in range(count):
            await client.post("/lead/", json={"name": f"Soak lead {i}"})
    created = [e for e in sim.events if (e["object_type"], e["action"]) == ("lead", "created")]
    events = created[-count:]
    store = Store(f"sqlite:///{folder / 'soak.db'}")
    Cursors(store).save_subscription(
        StoredSubscription("whsub_soak", "-", (("lead", "created"),), KEY)
    )
    triage = soak_triage()
    config = RuntimeConfig(
        roles=frozenset({"receiver", "worker"}), listen=("127.0.0.1", 0), catchup=False
    )
    memory: list[tuple[float, float]] = []
    async with open_checkpointer(folder / "checkpoints.db") as saver:
        runtime = Runtime(
            [triage],
            store=store,
            checkpointer=saver,
            api_key=sim.api_key,
            transport=sim.transport(),
            base_url=BASE_URL,
            config=config,
        )
        stop, sampled = asyncio.Event(), asyncio.Event()
        running = asyncio.create_task(runtime.run(stop))
        await runtime.ready.wait()
        gc.collect()
        gc.freeze()  # the embedded simulator's world is not our heap (see bench/webhooks.py)
        sampler = asyncio.create_task(sample_memory(memory, sampled))
        assert runtime.receiver_url is not None
        port = int(runtime.receiver_url.split(":")[2].split("/")[0])
        host = f"127.0.0.1:{port}"
        at = time.time() + seconds / 2
        requests = [(e["object_id"], signed_request(e, host, at)) for e in events]
        ctx = mp.get_context("spawn")
        mine, theirs = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_paced_sender, args=(port, requests, rate, theirs))
        child.start()
        result = await asyncio.to_thread(mine.recv)
        await asyncio.to_thread(child.join)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_landed.wait(), 60)
        sampled.set()
        await sampler
        stop.set()
        with contextlib.suppress(Exception):
            await running
    gc.unfreeze()
    audited = sum(1 for _ in AuditLog(store).rows())
    store.dispose()
    sent: dict[str, float] = result["sent"]
    first, last = min(sent.values()), max(sent.values())
    tasks = Counter(t["lead_id"] for t in sim.state["tasks"].values() if t["lead_id"] in sent)
    lost = sum(1 for k in sent if tasks[k] == 0)
    doubled = sum(1 for k in sent if tasks[k] > 1)
    print(
        f"soak: {count} deliveries at {rate:g}/s for {seconds:g} s; answers "
        f"{result['statuses']}; sends behind schedule {result['late']}; audit rows {audited}; "
        f"leads without a task {lost}, with more than one {doubled}"
    )
    for name, lo, hi in (("start", first, first + window), ("end", last - window, last)):
        waits = [(landed[k] - s) * 1000 for k, s in sent.items() if lo <= s <= hi and k in landed]
        waits = waits or [float("nan")]
        rss = [mb for t, mb in memory if lo <= t <= hi + 1] or [float("nan")]
        print(
            f"  {name} ({window:g} s, {len(waits)} deliveries): latency p50 "
            f"{percentile(waits, 50):.1f} ms, p99 {percentile(waits, 99):.1f} ms, max "
            f"{max(waits, default=0):.1f} ms; RSS {min(rss):.0f}-{max(rss):.0f} MB"
        )
    return result["statuses"] == {200: count} and lost == doubled == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ok = asyncio.run(soak(args.rate, args.minutes * 60, args.window, Path(tmp)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
