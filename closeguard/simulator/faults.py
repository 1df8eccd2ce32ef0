"""Fault injection: errors, latency and dropped connections on the API; delivery faults on
webhooks. Seeded, so the same seed gives the same faults in the same order.

``FaultConfig`` says, per endpoint group (``lead:read``), per resource root (``lead``, both
groups) or for every group (``"*"``), first match wins, how likely each fault is
(``HTTPFaults``), and how webhook deliveries misbehave (``WebhookFaults``). A
``FaultInjector`` holds the config and a ``random.Random(seed)``; every API decision draws
exactly two numbers (outcome, jitter) whatever the config, so a run is reproducible from its
seed and request order, and config switches at run time (``configure`` / ``disable``) do not
shift the sequence.

``FaultMiddleware(app, injector, clock)`` applies the decisions to an ASGI app:

- latency (``latency_ms`` + uniform ``jitter_ms``) is awaited on the clock (fake time in tests);
- 500 (JSON), 502 and 503 (ingress-style HTML) answer without reaching the app, with the
  caller's current ``RateLimit`` header (faulted calls are not charged);
- 429 answers with Close's exact shape (``RateLimit``, ``Retry-After``, ``rate_reset``);
- a dropped connection closes the socket without a response when served by uvicorn, and
  raises ``DroppedConnection`` (an ``httpx.RemoteProtocolError``, what httpx raises for a
  server that hangs up) when the app is called in process through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from closeguard.simulator.clock import Clock, SystemClock
from closeguard.simulator.ratelimit import (
    Caller,
    Callers,
    RateDecision,
    RateLimiter,
    RateLimits,
    rate_group_for,
    send_rate_limited,
    with_rate_limit_header,
)
from closeguard.tools.catalog import API_PREFIX

__all__ = [
    "DroppedConnection",
    "FaultConfig",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "FaultMiddleware",
    "HTTPFaults",
    "WebhookFaultDecision",
    "WebhookFaults",
    "drop_connection",
]

FaultKind = Literal["drop", "429", "500", "502", "503"]
Scope = dict[str, Any]
ASGIApp = Callable[..., Any]

_Probability = Field(default=0.0, ge=0.0, le=1.0)


class HTTPFaults(BaseModel):
    """Fault probabilities (0..1, summing to at most 1) and latency for one group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_500: float = _Probability
    error_502: float = _Probability
    error_503: float = _Probability
    error_429: float = _Probability
    drop: float = _Probability
    latency_ms: float = Field(default=0.0, ge=0.0)
    jitter_ms: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _total_at_most_one(self) -> HTTPFaults:
        if self.total > 1.0 + 1e-9:
            raise ValueError("fault probabilities must sum to at most 1")
        return self

    @property
    def total(self) -> float:
        return self.drop + self.error_429 + self.error_500 + self.error_502 + self.error_503

    def pick(self, draw: float) -> FaultKind | None:
        """The fault a uniform ``draw`` in [0, 1) lands on, if any."""
        edge = 0.0
        for kind, p in (
            ("drop", self.drop),
            ("429", self.error_429),
            ("500", self.error_500),
            ("502", self.error_502),
            ("503", self.error_503),
        ):
            edge += p
            if draw < edge:
                return kind  # type: ignore[return-value]
        return None


class WebhookFaults(BaseModel):
    """How webhook deliveries misbehave (each probability is drawn per delivery).

    - ``drop``: the delivery is never attempted (counted as dropped by fault).
    - ``duplicate``: the same body is delivered twice (a second delivery, same event).
    - ``delay``: the first attempt waits ``delay_seconds`` more (Close delays
      updated/deleted events for consolidation).
    - ``reorder``: the delivery is held back until the next delivery to the same
      subscription has gone first (or ``reorder_hold_seconds`` have passed).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    drop: float = _Probability
    duplicate: float = _Probability
    delay: float = _Probability
    delay_seconds: float = Field(default=30.0, ge=0.0)
    reorder: float = _Probability
    reorder_hold_seconds: float = Field(default=5.0, ge=0.0)


class FaultConfig(BaseModel):
    """Every fault the simulator injects. Empty config: no faults at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    groups: dict[str, HTTPFaults] = Field(default_factory=dict)
    webhooks: WebhookFaults = Field(default_factory=WebhookFaults)

    @classmethod
    def everywhere(cls, **faults: float) -> FaultConfig:
        """The same ``HTTPFaults(**faults)`` on every group."""
        return cls(groups={"*": HTTPFaults(**faults)})

    def for_group(self, group: str) -> HTTPFaults | None:
        """Faults for ``group``: exact group, then its resource root, then ``"*"``."""
        groups = self.groups
        if not groups:
            return None
        found = groups.get(group)
        if found is None:
            found = groups.get(group.partition(":")[0])
        if found is None:
            found = groups.get("*")
        return found


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What happens to one API call: a fault (or ``None``) and the latency to add."""

    fault: FaultKind | None
    latency: float

    @property
    def status(self) -> int | None:
        return None if self.fault is None or self.fault == "drop" else int(self.fault)


@dataclass(frozen=True, slots=True)
class WebhookFaultDecision:
    drop: bool = False
    duplicate: bool = False
    delay: float = 0.0
    reorder: bool = False


_NO_FAULT = FaultDecision(None, 0.0)


class FaultInjector:
    """Seeded fault decisions, switchable at run time.

    ``decide(group)`` for API calls; ``decide_webhook()`` for deliveries (the webhook
    dispatcher keeps its own RNG and reads only ``config.webhooks``, so API traffic does not
    change delivery faults). ``counts`` tallies injected faults by kind.
    """

    def __init__(self, config: FaultConfig | None = None, seed: int = 0) -> None:
        self.config = config or FaultConfig()
        self.seed = seed
        self._rng = random.Random(seed)
        self.counts: Counter[str] = Counter()

    def configure(self, config: FaultConfig) -> None:
        """Replace the config; the random sequence carries on."""
        self.config = config

    def disable(self) -> None:
        """Stop injecting (keeps the rest of the config)."""
        self.config = self.config.model_copy(update={"enabled": False})

    def enable(self) -> None:
        self.config = self.config.model_copy(update={"enabled": True})

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed``."""
        self.seed = seed
        self._rng = random.Random(seed)
        self.counts.clear()

    @property
    def active(self) -> bool:
        return self.config.enabled and bool(self.config.groups)

    def decide(self, group: str) -> FaultDecision:
        """The fault for one call on ``group`` (two draws per call when active)."""
        if not self.active:
            return _NO_FAULT
        outcome, jitter = self._rng.random(), self._rng.random()
        faults = self.config.for_group(group)
        if faults is None:
            return _NO_FAULT
        latency = (faults.latency_ms + faults.jitter_ms * jitter) / 1000.0
        fault = faults.pick(outcome)
        if fault is not None:
            self.counts[fault] += 1
        return FaultDecision(fault, latency)

    @staticmethod
    def decide_webhook(faults: WebhookFaults, rng: random.Random) -> WebhookFaultDecision:
        """Delivery faults for one delivery; always four draws from ``rng``."""
        drop, dup, delay, reorder = rng.random(), rng.random(), rng.random(), rng.random()
        return WebhookFaultDecision(
            drop=drop < faults.drop,
            duplicate=dup < faults.duplicate,
            delay=faults.delay_seconds if delay < faults.delay else 0.0,
            reorder=reorder < faults.reorder,
        )


class DroppedConnection(httpx.RemoteProtocolError):
    """The simulator hung up without answering (in-process stand-in for a closed socket)."""

    def __init__(self, message: str = "Server disconnected without sending a response.") -> None:
        super().__init__(message)


_GATEWAY_PAGES = {
    502: b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
    b"</body></html>",
    503: b"<html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>503 Service Unavailable</h1></body></html>",
}
_SERVER_ERROR = b'{"error": "Internal Server Error"}'


def _find_server_cycle(send: Any, depth: int = 6) -> Any | None:
    """The uvicorn request cycle behind ``send`` (through wrapping closures), if any."""
    seen: set[int] = set()
    todo = [(send, 0)]
    while todo:
        fn, level = todo.pop()
        if id(fn) in seen or level > depth:
            continue
        seen.add(id(fn))
        owner = getattr(fn, "__self__", None)
        if owner is not None and hasattr(getattr(owner, "transport", None), "close"):
            return owner
        target = getattr(fn, "__func__", fn)
        for cell in getattr(target, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                todo.append((value, level + 1))
        if owner is not None and callable(getattr(owner, "send", None)):
            todo.append((owner.send, level + 1))
    return None


def drop_connection(send: Any) -> None:
    """Hang up: close uvicorn's socket without a response, or raise ``DroppedConnection``."""
    cycle = _find_server_cycle(send)
    if cycle is None:
        raise DroppedConnection()
    cycle.keep_alive = False
    cycle.disconnected = True
    cycle.transport.close()


class FaultMiddleware:
    """ASGI middleware injecting ``injector``'s faults into calls under ``path_prefix``.

    Put it outermost (outside ``RateLimitMiddleware``): a faulted call never reaches the
    app and does not consume rate-limit allowance. ``limiter`` (optional) makes faulted
    responses report the caller's real ``RateLimit`` numbers, for the budgets
    ``caller_of(scope)`` names (the same ``Callers`` as the ``RateLimitMiddleware``).
    """

    def __init__(
        self,
        app: ASGIApp,
        injector: FaultInjector,
        clock: Clock | None = None,
        *,
        limiter: RateLimiter | None = None,
        caller_of: Callable[[Scope], Caller] | None = None,
        path_prefix: str = API_PREFIX,
    ) -> None:
        self.app = app
        self.injector = injector
        self.clock: Clock = clock or SystemClock()
        self.limiter = limiter
        self.caller_of = caller_of or Callers()
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or not self.injector.active
            or not scope["path"].startswith(self.path_prefix)
        ):
            await self.app(scope, receive, send)
            return
        group = rate_group_for(scope["method"], scope["path"])
        decision = self.injector.decide(group)
        if decision.latency > 0:
            await self.clock.sleep(decision.latency)
        fault = decision.fault
        if fault is None:
            await self.app(scope, receive, send)
        elif fault == "drop":
            drop_connection(send)
        elif fault == "429":
            await send_rate_limited(send, self._rate_decision(scope, group))
        else:
            seen = with_rate_limit_header(send, self._peek(scope, group))
            if fault == "500":
                await _send(seen, 500, _SERVER_ERROR, b"application/json")
            else:
                await _send(seen, int(fault), _GATEWAY_PAGES[int(fault)], b"text/html")

    def _peek(self, scope: Scope, group: str) -> RateDecision:
        if self.limiter is not None:
            return self.limiter.peek(group, *self.caller_of(scope))
        now = self.clock.now()
        reset = math.floor(now) + 1 - now
        limit = RateLimits().key_limit(group)
        return RateDecision(True, limit, limit, reset, group)

    def _rate_decision(self, scope: Scope, group: str) -> RateDecision:
        seen = self._peek(scope, group)
        return RateDecision(False, seen.limit, 0, seen.reset, group)


async def _send(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
