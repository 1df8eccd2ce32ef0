"""One Close rate budget shared by every process: the protocol and its window arithmetic.

Close meters each endpoint group per API key in fixed windows and says so on every
response (``RateLimit: limit, remaining, reset``). One process's ``Pacer`` only knows its
own requests; ten workers each pacing alone would together send ten times the limit. A
``RateBudget`` keeps, per (scope, group), the current window's end, its limit and how many
requests every process together was granted in it, somewhere all of them see (PostgreSQL
or Redis: ``closeguard/store/budget.py``). ``take`` grants one request or says how long to
wait; ``observe`` adopts what Close reports. The arithmetic lives here, pure, so each
backend only has to apply it atomically to one stored ``Window``.

Times are wall-clock epoch seconds (``Clock.now``), the only time processes on several
machines share. A window is rolled over only once its end (as last reported by Close, plus
``MARGIN``) has passed, and latency makes that report late, never early, so a request
granted in the next window reaches Close in it. Nothing is granted in a window's last
``GUARD`` part, and ``HEADROOM`` of its limit is kept back for requests delayed between
grant and send.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Protocol

from closeguard.tools._pacing import RateLimitInfo

__all__ = [
    "GUARD",
    "HEADROOM",
    "MARGIN",
    "RateBudget",
    "Window",
    "chunk",
    "news",
    "observe",
    "scope_of",
    "take",
]

MARGIN = 0.02
"""Seconds past a window's reported end before the next one is granted."""
GUARD = 0.05
"""The last part of a window (a fraction of its length) in which nothing is granted: a
request granted then could reach Close after the window ended and count in the next."""
HEADROOM = 0.1
"""The part of each window's limit never granted, for requests that reach Close later
than planned (a stalled process between grant and send) and land in the next window."""


class RateBudget(Protocol):
    """A rate budget shared between processes (``CloseClient(budget=...)``)."""

    async def take(self, group: str, now: float) -> float:
        """Grant one request of ``group`` now (0.0), or the seconds to wait before asking
        again."""
        ...

    async def observe(self, group: str, info: RateLimitInfo, now: float) -> None:
        """Adopt the window a response of ``group`` reported."""
        ...


def scope_of(api_key: str) -> str:
    """A budget scope for an API key: a hash, never the key."""
    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Window:
    """One group's shared window: its end (epoch), limit, length, requests granted in it."""

    end: float | None = None
    limit: float | None = None
    span: float = 1.0
    used: float = 0.0


def _roll(window: Window, now: float) -> Window:
    if window.end is None or now < window.end + MARGIN:
        return window
    behind = math.floor((now - window.end) / window.span) + 1
    return replace(window, end=window.end + behind * window.span, used=0.0)


def take(window: Window, now: float, want: int = 1) -> tuple[Window, float]:
    """Grant up to ``want`` requests (the window with them counted, and how many: a
    positive number) or say how long to wait (a negative number of seconds)."""
    window = _roll(window, now)
    if window.end is None or window.limit is None:
        return replace(window, used=window.used + 1), 1.0
    cap = max(1.0, math.floor(window.limit * (1 - HEADROOM)))
    granted = min(float(want), cap - window.used)
    if granted >= 1 and now < window.end - GUARD * window.span:
        return replace(window, used=window.used + granted), granted
    return window, -max(window.end + MARGIN - now, 0.001)


def chunk(window: Window) -> int:
    """How many requests one trip to the shared store takes at once: 1 under a small
    limit (exact sharing), up to 8 under a large one (fewer trips; a few grants may go
    unused when the window ends)."""
    return 1 if window.limit is None else max(1, min(8, int(window.limit // 40)))


def news(window: Window, info: RateLimitInfo, now: float) -> bool:
    """Whether a report tells the shared window something it may need: a new window or
    limit, or, once less than half the window is left, more requests counted by Close
    than ``window`` (a recent copy) had granted. Every grant is counted by ``take``
    anyway; a report only adds requests the budget did not grant (another tool on the
    same key), which matter once the window runs low, so earlier the trip is saved."""
    if window.end is None or info.limit != window.limit or info.limit is None:
        return True
    current = _roll(window, now)
    if abs(now + info.reset - (current.end or 0.0)) > current.span / 2:
        return True
    counted = info.limit - info.remaining
    return info.remaining < info.limit / 2 and counted > current.used


def observe(window: Window, info: RateLimitInfo, now: float) -> Window:
    """Merge a response's report: its window's end and what Close counted in it."""
    end = now + info.reset
    span = max(window.span, math.ceil(info.reset * 10) / 10 or 1.0)
    counted = (info.limit - info.remaining) if info.limit is not None else window.used
    current = _roll(window, now)
    if current.end is None or abs(end - current.end) > span / 2:
        if current.end is not None and end < current.end:
            return replace(current, limit=info.limit, span=span)
        first = current.used if current.end is None else 0.0
        return Window(end=end, limit=info.limit, span=span, used=max(counted, first))
    return Window(
        end=max(end, current.end), limit=info.limit, span=span, used=max(current.used, counted)
    )
