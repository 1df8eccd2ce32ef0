"""Rate-limit pacing: read Close's ``RateLimit`` header, wait before a group runs dry.

Close meters each endpoint group separately and reports the window on every response
(``RateLimit: limit=100, remaining=50, reset=0.5``, reset in seconds, decimals allowed).
``Pacer`` keeps one window per group, counts requests in flight against ``remaining`` so
concurrent callers do not overrun it, and sleeps until the reset when it hits zero. A 429
blocks the group until the precise reset Close asked for (``rate_reset`` in the body, else
the header, else ``Retry-After``).

Time comes from a ``Clock`` (``closeguard.tools.clock``), so tests run on a ``FakeClock``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from closeguard.tools.clock import Clock

Jitter = Callable[[float], float]

DEFAULT_GROUP = "default"
_PAIR = re.compile(r"([A-Za-z_-]+)\s*=\s*\"?(-?[0-9]+(?:\.[0-9]+)?)\"?")


@dataclass(frozen=True)
class RateLimitInfo:
    """One ``RateLimit`` header: the window size, what is left, seconds until it resets."""

    limit: float | None
    remaining: float
    reset: float


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """``RateLimit: limit=…, remaining=…, reset=…`` (or the split ``RateLimit-*`` headers)."""
    values: dict[str, float] = {}
    combined = headers.get("ratelimit")
    if combined:
        for key, number in _PAIR.findall(combined):
            values[key.lower()] = float(number)
    for key in ("limit", "remaining", "reset"):
        split = headers.get(f"ratelimit-{key}")
        if key not in values and split is not None:
            try:
                values[key] = float(split.strip())
            except ValueError:
                continue
    if "remaining" not in values or "reset" not in values:
        return None
    return RateLimitInfo(
        limit=values.get("limit"), remaining=values["remaining"], reset=max(values["reset"], 0.0)
    )


def retry_after_seconds(value: str | None, *, now_wall: float) -> float | None:
    """``Retry-After`` as seconds: integer seconds (fractions rounded up) or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return float(math.ceil(float(text)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now_wall, 0.0)


def rate_reset_from_body(response: httpx.Response) -> float | None:
    """Close's 429 body: ``{"error": {"rate_reset": x}}``, or a top-level ``rate_reset``."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    candidates = [error.get("rate_reset") if isinstance(error, dict) else None]
    candidates.append(body.get("rate_reset"))
    for candidate in candidates:
        if isinstance(candidate, int | float) and not isinstance(candidate, bool):
            return max(float(candidate), 0.0)
        if isinstance(candidate, str):
            try:
                return max(float(candidate), 0.0)
            except ValueError:
                continue
    return None


def rate_limit_wait(response: httpx.Response, *, now_wall: float) -> float | None:
    """How long Close asked us to wait after a 429, most precise source first.

    ``now_wall`` (epoch seconds) turns a ``Retry-After`` date into a wait.
    """
    from_body = rate_reset_from_body(response)
    if from_body is not None:
        return from_body
    info = parse_rate_limit(response.headers)
    if info is not None:
        return info.reset
    return retry_after_seconds(response.headers.get("retry-after"), now_wall=now_wall)


def make_jitter(ratio: float, floor: float, rng: random.Random | None = None) -> Jitter:
    """``delay`` plus up to ``ratio * delay + floor`` of random extra, never less than delay."""
    source = rng or random.Random()

    def jitter(delay: float) -> float:
        if delay <= 0:
            return 0.0
        return delay + source.uniform(0.0, delay * ratio + floor)

    return jitter


@dataclass
class _Window:
    limit: float | None = None
    remaining: float | None = None
    reset_at: float = 0.0
    in_flight: int = 0


class Pacer:
    """Per-group rate windows; ``acquire`` before sending, ``release`` + ``observe`` after."""

    def __init__(self, *, clock: Clock, jitter: Jitter) -> None:
        self._clock = clock
        self._jitter = jitter
        self._windows: dict[str, _Window] = {}

    def window(self, group: str) -> _Window:
        return self._windows.setdefault(group, _Window())

    async def acquire(self, group: str) -> float:
        """Wait until ``group`` may send, take one request from it; the seconds waited."""
        window = self.window(group)
        waited = 0.0
        slept_until: float | None = None
        while window.remaining is not None and window.remaining <= 0:
            now = self._clock.monotonic()
            if now >= window.reset_at or (
                slept_until is not None and window.reset_at <= slept_until
            ):
                window.remaining = window.limit
                break
            delay = self._jitter(window.reset_at - now)
            slept_until = window.reset_at
            await self._clock.sleep(delay)
            waited += delay
        if window.remaining is not None:
            window.remaining -= 1
        window.in_flight += 1
        return waited

    def release(self, group: str) -> None:
        window = self.window(group)
        window.in_flight = max(window.in_flight - 1, 0)

    def observe(self, group: str, headers: Mapping[str, str]) -> None:
        """Adopt the window a response reports, less the requests still in flight."""
        info = parse_rate_limit(headers)
        if info is None:
            return
        window = self.window(group)
        window.limit = info.limit
        window.remaining = info.remaining - window.in_flight
        window.reset_at = self._clock.monotonic() + info.reset

    def block(self, group: str, seconds: float) -> None:
        """A 429: nothing more goes out in ``group`` for ``seconds``."""
        window = self.window(group)
        window.remaining = 0
        window.reset_at = self._clock.monotonic() + max(seconds, 0.0)
