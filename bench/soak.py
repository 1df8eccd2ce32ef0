"""Soak: the served runtime at a steady delivery rate for minutes, with the guard, the
audit log and the workers on; memory and latency at the start and at the end.

    .venv/bin/python bench/soak.py [--rate 50] [--minutes 10] [--window 60]

The rig is bench/webhooks.py's latency part (receiver on 127.0.0.1, signed ``lead.created``
deliveries from a paced child process, ``new-lead-triage`` writing to the in-process
simulator through its guard, audited), run for ``--minutes``. Reported for the first and
the last ``--window`` seconds: delivery -> first write latency (p50, p99, max) and the
process's resident memory (VmRSS); and whether every delivery was answered 200 and every
lead got exactly one intro task. Run by hand (not in CI): 10 minutes at 50/s is 30,000
leads, created in the simulator before the clock starts. Targets: every delivery answered
200 and every lead given exactly one task; latency p99 <= 100 ms at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import yaml
from webhooks import P99_TARGET_MS, deliver_paced, percentile, verdict

from closeguard.guardrails import AuditLog, Policy
from closeguard.workflows.definition import Workflow
from closeguard.workflows.loader import packaged_workflows


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
    memory: list[tuple[float, float]] = []
    print(f"creating {count} leads in the simulator ...", flush=True)
    paced = await deliver_paced(
        soak_triage(),
        rate,
        seconds,
        folder,
        wait=60,
        during=lambda stop: sample_memory(memory, stop),
    )
    audited = sum(1 for _ in AuditLog(paced.store).rows())
    paced.store.dispose()
    sim, result, landed = paced.sim, paced.result, paced.landed
    sent: dict[str, float] = result["sent"]
    first, last = min(sent.values()), max(sent.values())
    tasks = Counter(t["lead_id"] for t in sim.state["tasks"].values() if t["lead_id"] in sent)
    lost = sum(1 for k in sent if tasks[k] == 0)
    doubled = sum(1 for k in sent if tasks[k] > 1)
    complete = result["statuses"] == {200: count} and lost == doubled == 0
    print(
        f"soak: {count} deliveries at {rate:g}/s for {seconds:g} s; answers "
        f"{result['statuses']}; sends behind schedule {result['late']}; audit rows {audited}; "
        f"leads without a task {lost}, with more than one {doubled} "
        f"(target: all answered 200, each lead one task) {verdict(complete)}"
    )
    fast = True
    for name, lo, hi in (("start", first, first + window), ("end", last - window, last)):
        waits = [(landed[k] - s) * 1000 for k, s in sent.items() if lo <= s <= hi and k in landed]
        waits = waits or [float("nan")]
        rss = [mb for t, mb in memory if lo <= t <= hi + 1] or [float("nan")]
        p99 = percentile(waits, 99)
        fast = fast and p99 <= P99_TARGET_MS
        print(
            f"  {name} ({window:g} s, {len(waits)} deliveries): latency p50 "
            f"{percentile(waits, 50):.1f} ms, p99 {p99:.1f} ms (target <= {P99_TARGET_MS:g} ms) "
            f"{verdict(p99 <= P99_TARGET_MS)}, max {max(waits, default=0):.1f} ms; "
            f"RSS {min(rss):.0f}-{max(rss):.0f} MB"
        )
    return complete and fast


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
