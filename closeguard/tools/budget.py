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
granted in the next window reaches Close in it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Protocol

from closeguard.tools._pacing import RateLimitInfo

__all__ = ["MARGIN", "RateBudget", "Window", "observe", "scope_of", "take"]

MARGIN = 0.02
"""Seconds past a window's reported end before the next one is granted."""


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


def take(window: Window, now: float) -> tuple[Window, float]:
    """Grant a request (the window with it counted, 0.0) or say how long to wait."""
    window = _roll(window, now)
    if window.end is None or window.limit is None or window.used < window.limit:
        return replace(window, used=window.used + 1), 0.0
    return window, max(window.end + MARGIN - now, 0.001)


def observe(window: Window, info: RateLimitInfo, now: float) -> Window:
    """Merge a response's report: its window's end and what Close counted in it."""
    end = now + info.reset
    span = max(window.span, math.ceil(info.reset * 10) / 10 or 1.0)
    counted = (info.limit - info.remaining) if info.limit is not None else window.used
    current = _roll(window, now)
    if current.end is None or abs(end - current.end) > span / 2:
        if current.end is not None and end < current.end:
            return replace(current, limit=info.limit, span=span)
        return Window(end=end, limit=info.limit, span=span, used=counted)
    return Window(
        end=max(end, current.end), limit=info.limit, span=span, used=max(current.used, counted)
    )
