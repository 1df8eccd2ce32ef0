"""Time for closeguard: one ``Clock`` protocol, a real clock and a fake one.

The client's pacing and retries, and the simulator's rate-limit windows, fault latency and
webhook retry schedules, all read and spend time through a ``Clock``, so tests and evals
run on fake time and never really wait:

- ``SystemClock``: wall time (``time.time``), ``time.monotonic`` and ``asyncio.sleep``.
- ``FakeClock(start=...)``: time moves only when told. ``advance(seconds)`` moves it (and
  wakes sleepers whose deadline has passed). ``sleep(seconds)`` either jumps time forward
  by ``seconds`` and returns at once (``auto_advance=True``, the default: latency and
  back-off cost no real time), or parks the caller until ``advance`` reaches its deadline
  (``auto_advance=False``: for tests that step time by hand).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_FAKE_START", "Clock", "FakeClock", "SystemClock"]

DEFAULT_FAKE_START = 1_700_000_000.0


@runtime_checkable
class Clock(Protocol):
    """What closeguard needs from time."""

    def now(self) -> float:
        """Epoch seconds (for timestamps and fixed rate-limit windows)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards (for durations)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that moves only when advanced; deterministic for tests.

    ``now()`` starts at ``start`` (epoch seconds) and ``monotonic()`` at 0; both move
    together. With ``auto_advance`` (default) ``sleep(s)`` advances the clock by ``s`` and
    yields once to the event loop; without it, ``sleep`` waits until ``advance`` (or
    ``advance_to``) moves time past its deadline.
    """

    def __init__(self, start: float = DEFAULT_FAKE_START, *, auto_advance: bool = True) -> None:
        self._start = float(start)
        self._elapsed = 0.0
        self.auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._start + self._elapsed

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (negative values are refused) and wake sleepers."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._elapsed += seconds
        self._wake()

    def advance_to(self, epoch: float) -> None:
        """Move ``now()`` forward to ``epoch`` (no-op if it is already there or later)."""
        if epoch > self.now():
            self.advance(epoch - self.now())

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if self.auto_advance:
            if seconds:
                self.advance(seconds)
            await asyncio.sleep(0)
            return
        if seconds == 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._seq), future))
        await future

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now():.3f})"
