"""The benches' yardstick: how fast this machine is right now.

CPU time inside a VM moves with the host (the same code on the same 2-core machine has
read 1.7-2x slower from one day to the next), so every bench that reports a time prints
this fixed workload's time first: figures from different days compare through it.
"""

from __future__ import annotations

import hashlib
import time

YARDSTICK_ROUNDS = 200_000


def yardstick() -> float:
    """Milliseconds of CPU for a fixed pure-Python workload (a loop of arithmetic, a dict and
    SHA-256 over short strings): how fast this machine is right now, printed before any
    figure so figures from different machines or loads can be compared."""
    began = time.process_time()
    digest = b""
    table: dict[int, int] = {}
    for i in range(YARDSTICK_ROUNDS):
        table[i & 1023] = table.get(i & 1023, 0) + i * 3 % 7
        if i % 4 == 0:
            digest = hashlib.sha256(digest + str(i).encode()).digest()
    return (time.process_time() - began) * 1000


def print_yardstick() -> float:
    """Print the best of three yardstick runs (ms of CPU), with the reference beside it."""
    best = min(yardstick() for _ in range(3))
    print(
        f"yardstick: {YARDSTICK_ROUNDS:,} rounds of fixed pure-Python work in {best:.0f} ms of CPU "
        f"(best of 3; a quiet 2-core development VM took 50 ms: larger means a slower "
        f"or busier machine, and every figure below scales with it)"
    )
    return best
