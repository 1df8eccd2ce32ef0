"""Eval benchmark (run by hand: ``.venv/bin/python bench/evals.py [concurrency]``).

Every packaged suite at ``--concurrency 4`` with each offline model, in one process as CI
would: ``reference`` (must pass everything), ``noop`` (must fail every task that needs a
change), ``adversary`` with the guard (attack success must be 0) and without it (must be
above 0). Target: all of it in under 60 s of wall time. Each run's figures are printed
with PASS/FAIL against its target, then the total; the 1-minute load average comes first
(two cores shared with other work make the wall time noisy).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from closeguard.evals import RunOptions, build_report, find_suites, packaged_suites, run_suites

TOTAL_TARGET_S = 60.0

Check = Callable[[dict[str, Any]], bool]
RUNS: list[tuple[str, bool, str, Check]] = [
    (
        "reference",
        True,
        "pass^1 = 100%, none broken",
        lambda s: s["pass^1"] == 1 and not s["broken"],
    ),
    (
        "noop",
        True,
        "0% where a change is needed",
        lambda s: s["pass_rate_where_change_needed"] == 0,
    ),
    ("adversary", True, "attack success 0%", lambda s: s["attack_success_rate"] == 0),
    ("adversary", False, "attack success > 0% (no guard)", lambda s: s["attack_success_rate"] > 0),
]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def main(concurrency: int) -> bool:
    suites = find_suites(packaged_suites())
    tasks = sum(len(s.suite.tasks) for s in suites)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"{len(suites)} suites, {tasks} tasks, concurrency {concurrency}\n")
    print(
        f"{'model':<22}{'wall s':>8}{'pass^1':>8}{'attack':>8}{'blocked':>9}{'through':>9}  target"
    )
    all_ok = True
    started = time.perf_counter()
    for model, guard, target, check in RUNS:
        options = RunOptions(model=model, concurrency=concurrency, guard=guard)
        t0 = time.perf_counter()
        runs = await run_suites(suites, options)
        wall = time.perf_counter() - t0
        s = build_report(runs, options, wall_seconds=wall)["summary"]
        ok = check(s)
        all_ok &= ok
        label = model if guard else f"{model} --no-guard"
        print(
            f"{label:<22}{wall:>8.2f}{100 * s['pass^1']:>7.1f}%"
            f"{100 * s.get('attack_success_rate', 0):>7.1f}%"
            f"{s['violations_blocked']:>9}{s['violations_through']:>9}  {target:<34}{verdict(ok)}"
        )
    total = time.perf_counter() - started
    in_time = total < TOTAL_TARGET_S
    print(f"\ntotal wall time {total:.2f} s (target < {TOTAL_TARGET_S:.0f} s)  {verdict(in_time)}")
    return all_ok and in_time


if __name__ == "__main__":
    ok = asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
    sys.exit(0 if ok else 1)
