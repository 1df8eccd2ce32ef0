"""bench/pacing.py's true minimum agrees with the simulator's rate limiter: a perfect pacer
reaches it exactly, and no schedule of calls beats it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from closeguard.simulator.ratelimit import RateLimiter, RateLimits
from closeguard.tools.clock import FakeClock

GROUP = "lead:read"


def _pacing() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "pacing.py"
    spec = importlib.util.spec_from_file_location("bench_pacing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


min_seconds = _pacing().min_seconds


def limiter(rps: float, window: float, start: float) -> tuple[RateLimiter, FakeClock, int]:
    clock = FakeClock(start=start)
    limits = RateLimits(groups={GROUP: rps}, window=window)
    return RateLimiter(limits, clock), clock, limits.key_limit(GROUP)


def greedy(requests: int, rps: float, window: float, start: float) -> float:
    """Seconds until the last call is admitted, for a client that calls whenever allowed
    and otherwise waits exactly the ``reset`` the limiter announces."""
    lim, clock, _ = limiter(rps, window, start)
    admitted = 0
    while admitted < requests:
        decision = lim.hit(GROUP, "key", "org")
        if decision.allowed:
            admitted += 1
        else:
            clock.advance(decision.reset)
    return clock.now() - start


def test_examples_of_the_bound() -> None:
    assert min_seconds(200, 20, 1.0, 1_700_000_000.0) == 9.0  # started as a window opened
    assert min_seconds(200, 20, 1.0, 1_700_000_000.25) == 8.75  # 0.25 s into it
    assert min_seconds(20, 20, 1.0, 1_700_000_000.5) == 0.0  # fits in the first window
    assert min_seconds(21, 20, 1.0, 1_700_000_000.5) == 0.5
    assert min_seconds(201, 20, 1.0, 1_700_000_000.0) == 10.0


@settings(max_examples=200, deadline=None)
@given(
    requests=st.integers(1, 400),
    rps=st.sampled_from([1.0, 3.0, 20.0, 40.0]),
    window=st.sampled_from([1.0, 2.0, 0.5]),
    phase=st.floats(0, 0.999),
)
def test_a_perfect_pacer_takes_exactly_the_minimum(
    requests: int, rps: float, window: float, phase: float
) -> None:
    start = 1_700_000_000.0 + phase * window
    _, _, per_window = limiter(rps, window, start)
    bound = min_seconds(requests, per_window, window, start)
    assert abs(greedy(requests, rps, window, start) - bound) < 1e-6


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.floats(0, 0.3), min_size=1, max_size=300), phase=st.floats(0, 0.999))
def test_no_schedule_of_calls_beats_the_minimum(gaps: list[float], phase: float) -> None:
    start = 1_700_000_000.0 + phase
    lim, clock, per_window = limiter(20.0, 1.0, start)
    admitted = 0
    for gap in gaps:
        clock.advance(gap)
        if lim.hit(GROUP, "key", "org").allowed:
            admitted += 1
            assert clock.now() - start >= min_seconds(admitted, per_window, 1.0, start) - 1e-9
