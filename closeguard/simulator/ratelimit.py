"""Close-style rate limits: per endpoint group, per API key, and per organization.

Close limits each *endpoint group* (``lead:read``, ``lead:write``, ... from
``Endpoint.rate_group``; paths the catalog does not know fall in ``"default"``) per API key,
and per organization at three times the per-key limit. Every response carries
``RateLimit: limit=N, remaining=M, reset=S`` (``reset`` in seconds, decimals allowed); a
refused call gets 429, ``Retry-After`` (whole seconds, rounded up) and
``{"error": {"message": "API call count exceeded for this period", "rate_reset": S}}``.

The model is fixed windows of ``RateLimits.window`` seconds (default 1) aligned on the
clock's epoch time, so ``reset`` is the exact time left in the current window. Refused
calls do not consume the allowance.

Two layers:

- ``RateLimiter(limits, clock).hit(group, key_id, org_id) -> RateDecision``: the pure core.
- ``RateLimitMiddleware(app, limiter, caller_of=...)``: the ASGI wrapper. It charges each
  request to a ``(key, organization)`` pair from ``Callers``, resolves the group from the
  catalog, answers 429 itself and adds the header to every response, errors and 401s
  included. Only paths outside ``path_prefix`` pass through untouched.

Callers are named by a hash of the Basic-auth username or Bearer token (the credential
itself is never stored or logged). A request without a credential, or with one no
organization knows, is charged to ``UNAUTHENTICATED_ORG`` (missing credentials share the
``ANONYMOUS_KEY`` budget, each bad credential has its own), so a flood of bad keys can
neither 429 nor slow an organization's valid keys, yet is refused past its own limits.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from closeguard.simulator.clock import Clock, SystemClock
from closeguard.tools.catalog import API_PREFIX, find_endpoint
from closeguard.tools.errors import UnknownEndpoint

__all__ = [
    "ANONYMOUS_KEY",
    "DEFAULT_GROUP",
    "DEFAULT_ORG",
    "RATE_LIMIT_MESSAGE",
    "UNAUTHENTICATED_ORG",
    "Caller",
    "Callers",
    "RateDecision",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimits",
    "credential_id",
    "format_reset",
    "rate_group_for",
    "rate_limit_header",
    "rate_limited_body",
    "rate_limited_headers",
    "retry_after",
    "send_rate_limited",
    "with_rate_limit_header",
]

DEFAULT_GROUP = "default"
DEFAULT_ORG = "orga_default"
ANONYMOUS_KEY = "anonymous"
UNAUTHENTICATED_ORG = "unauthenticated"
RATE_LIMIT_MESSAGE = "API call count exceeded for this period"

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


class RateLimits(BaseModel):
    """How many calls per window each API key may make, per endpoint group.

    The per-key limit of a group is, first match wins: ``groups[group]``, then ``rps``
    (one limit for every group: what ``closeguard sim serve --rate-limit RPS`` sets), then
    ``read_rps`` for groups ending in ``:read`` (and ``"default"``) or ``write_rps``. The
    organization limit is ``org_multiplier`` times the key limit. Limits are in calls per
    second; a window of ``window`` seconds allows ``round(rps * window)`` calls (at least 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    read_rps: float = Field(default=40.0, gt=0)
    write_rps: float = Field(default=20.0, gt=0)
    rps: float | None = Field(default=None, gt=0)
    groups: dict[str, float] = Field(default_factory=dict)
    org_multiplier: float = Field(default=3.0, ge=1)
    window: float = Field(default=1.0, gt=0)

    def key_limit(self, group: str) -> int:
        """Calls one API key may make in one window of ``group``."""
        if group in self.groups:
            rate = self.groups[group]
        elif self.rps is not None:
            rate = self.rps
        elif group.endswith(":write"):
            rate = self.write_rps
        else:
            rate = self.read_rps
        return max(1, round(rate * self.window))

    def org_limit(self, group: str) -> int:
        """Calls the whole organization may make in one window of ``group``."""
        return max(1, round(self.key_limit(group) * self.org_multiplier))


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one call: allowed or not, and what the ``RateLimit`` header says.

    ``limit``/``remaining`` describe the tighter of the key and organization allowances;
    ``reset`` is the seconds left in the current window.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: float
    group: str = DEFAULT_GROUP
    scope: str = "key"

    @property
    def header(self) -> str:
        return rate_limit_header(self.limit, self.remaining, self.reset)

    @property
    def retry_after(self) -> int:
        return retry_after(self.reset)


def format_reset(reset: float) -> str:
    """``0.437`` -> ``"0.437"``, ``1.0`` -> ``"1"``: seconds with at most three decimals."""
    text = f"{max(0.0, reset):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def rate_limit_header(limit: int, remaining: int, reset: float) -> str:
    """The ``RateLimit`` header value Close sends."""
    return f"limit={limit}, remaining={max(0, remaining)}, reset={format_reset(reset)}"


def retry_after(reset: float) -> int:
    """``Retry-After`` in whole seconds, rounded up, never 0."""
    return max(1, math.ceil(round(reset, 3)))


def rate_limited_body(reset: float) -> bytes:
    """The JSON body of a 429."""
    rate_reset = float(format_reset(reset))
    return json.dumps({"error": {"message": RATE_LIMIT_MESSAGE, "rate_reset": rate_reset}}).encode()


def rate_limited_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """Raw ASGI headers for a 429 built from ``decision``."""
    return [
        (b"content-type", b"application/json"),
        (b"ratelimit", decision.header.encode()),
        (b"retry-after", str(decision.retry_after).encode()),
    ]


@lru_cache(maxsize=4096)
def rate_group_for(method: str, path: str) -> str:
    """The rate-limit group of a request (``"default"`` for paths the catalog lacks)."""
    try:
        return find_endpoint(method, path)[0].rate_group
    except UnknownEndpoint:
        return DEFAULT_GROUP


@lru_cache(maxsize=1024)
def _hash_credential(secret: str) -> str:
    return "key_" + hashlib.sha256(secret.encode()).hexdigest()[:16]


def credential_id(scope: Scope) -> str | None:
    """A stable, non-reversible id for the request's API key or token; ``None`` if absent.

    Basic auth uses the username (Close's API key); Bearer uses the token. Only a hash
    leaves this function.
    """
    for name, value in scope.get("headers", ()):
        if name != b"authorization":
            continue
        kind, _, cred = value.decode("latin-1").partition(" ")
        cred = cred.strip()
        if kind.lower() == "basic" and cred:
            try:
                user = base64.b64decode(cred, validate=False).decode("utf-8", "replace")
            except ValueError:
                return None
            username = user.partition(":")[0]
            return _hash_credential(username) if username else None
        if kind.lower() == "bearer" and cred:
            return _hash_credential("bearer:" + cred)
        return None
    return None


class RateLimiter:
    """Fixed-window counters per (group, key) and (group, organization).

    ``hit`` counts a call if both allowances have room and says what the header should
    show. ``allowed``/``rejected`` count calls per key id (for benchmarks and tests).
    Thread-unsafe by design: the simulator runs on one event loop.
    """

    def __init__(self, limits: RateLimits | None = None, clock: Clock | None = None) -> None:
        self.limits = limits or RateLimits()
        self.clock: Clock = clock or SystemClock()
        self._windows: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.allowed: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()

    def configure(self, limits: RateLimits) -> None:
        """Swap the limits at run time; current windows keep their counts."""
        self.limits = limits

    def reset(self) -> None:
        """Forget every window and counter."""
        self._windows.clear()
        self.allowed.clear()
        self.rejected.clear()

    def _used(self, kind: str, group: str, who: str, index: int) -> int:
        found = self._windows.get((kind, group, who))
        return found[1] if found is not None and found[0] == index else 0

    def peek(self, group: str, key_id: str, org_id: str) -> RateDecision:
        """What the header would say now, without counting a call."""
        return self._decide(group, key_id, org_id, count=False)

    def hit(self, group: str, key_id: str, org_id: str) -> RateDecision:
        """Count one call by ``key_id`` of organization ``org_id`` on ``group``."""
        return self._decide(group, key_id, org_id, count=True)

    def _decide(self, group: str, key_id: str, org_id: str, *, count: bool) -> RateDecision:
        limits = self.limits
        now = self.clock.now()
        window = limits.window
        index = math.floor(now / window)
        reset = (index + 1) * window - now
        if not limits.enabled:
            return RateDecision(True, 0, 0, reset, group)
        key_limit, org_limit = limits.key_limit(group), limits.org_limit(group)
        key_used = self._used("key", group, key_id, index)
        org_used = self._used("org", group, org_id, index)
        allowed = key_used < key_limit and org_used < org_limit
        if count and allowed:
            key_used += 1
            org_used += 1
            self._windows[("key", group, key_id)] = (index, key_used)
            self._windows[("org", group, org_id)] = (index, org_used)
        if count:
            (self.allowed if allowed else self.rejected)[key_id] += 1
        key_left, org_left = key_limit - key_used, org_limit - org_used
        if org_left < key_left:
            return RateDecision(allowed, org_limit, org_left, reset, group, "organization")
        return RateDecision(allowed, key_limit, key_left, reset, group, "key")


def _default_org(_scope: Scope, _key_id: str) -> str | None:
    return DEFAULT_ORG


Caller = tuple[str, str]
"""``(key_id, org_id)``: the two budgets a request is charged to."""


class Callers:
    """Names the budgets of a request: ``callers(scope) -> (key_id, org_id)``.

    ``key_of(scope)`` names the credential (default: ``credential_id``, a hash; ``None`` when
    absent). ``org_of(scope, key_id)`` names the organization of a credential it knows and
    returns ``None`` for one it does not (default: every credential belongs to
    ``DEFAULT_ORG``, as in a simulator with one organization and no key check).
    """

    def __init__(
        self,
        key_of: Callable[[Scope], str | None] = credential_id,
        org_of: Callable[[Scope, str], str | None] = _default_org,
    ) -> None:
        self.key_of = key_of
        self.org_of = org_of

    def __call__(self, scope: Scope) -> Caller:
        key_id = self.key_of(scope)
        if key_id is None:
            return ANONYMOUS_KEY, UNAUTHENTICATED_ORG
        return key_id, self.org_of(scope, key_id) or UNAUTHENTICATED_ORG


class RateLimitMiddleware:
    """ASGI middleware applying a ``RateLimiter`` to every API call, 401s included.

    ``caller_of(scope)`` names the key and organization budgets charged (default:
    ``Callers()``). Only paths under ``path_prefix`` (``/api/v1``) are limited.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        *,
        caller_of: Callable[[Scope], Caller] | None = None,
        path_prefix: str = API_PREFIX,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.caller_of = caller_of or Callers()
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return
        key_id, org_id = self.caller_of(scope)
        group = rate_group_for(scope["method"], scope["path"])
        decision = self.limiter.hit(group, key_id, org_id)
        if not decision.allowed:
            await send_rate_limited(send, decision)
            return
        await self.app(scope, receive, with_rate_limit_header(send, decision))


def with_rate_limit_header(send: Any, decision: RateDecision) -> Any:
    """An ASGI ``send`` that sets ``decision``'s ``RateLimit`` header on the response."""
    header = (b"ratelimit", decision.header.encode())

    async def send_with_header(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0].lower() != b"ratelimit"]
            headers.append(header)
            message = {**message, "headers": headers}
        await send(message)

    return send_with_header


async def send_rate_limited(send: Any, decision: RateDecision) -> None:
    """Send Close's 429 for ``decision`` on an ASGI ``send``."""
    body = rate_limited_body(decision.reset)
    headers = [*rate_limited_headers(decision), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
