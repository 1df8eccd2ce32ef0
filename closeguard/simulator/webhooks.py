"""Signed webhook delivery, exactly as Close signs it, with retries and delivery faults.

Signing (Close's published algorithm)::

    close-sig-timestamp = str(unix seconds)
    close-sig-hash      = hmac.new(bytes.fromhex(signature_key),
                                   (timestamp + raw_body).encode(), sha256).hexdigest()

The key is the hex-*decoded* bytes. ``verify_signature`` is the receiver's half: constant
time, and it refuses timestamps more than ``tolerance`` seconds from now (replays).

``WebhookDispatcher`` turns events into deliveries:

- ``publish(event)`` (sync, so it can be the simulator's ``on_event`` callback) selects the
  active subscriptions whose ``events`` list has an entry with the event's ``object_type``
  and ``action`` and whose ``extra_filter`` (if any) matches, and queues one delivery each
  with body ``{"subscription_id": ..., "event": {...}}``.
- Each attempt POSTs the body signed with a fresh timestamp, to a real URL (httpx) or to an
  in-process ASGI app registered with ``mount(prefix, app)`` (httpx.ASGITransport).
- A non-2xx answer, a connection error or a timeout is retried after
  ``RetryPolicy.delay(n)`` (exponential: ``base * factor**(n-1)``, capped at ``max_delay``)
  until ``max_attempts`` or ``max_age`` (72 h, as Close) is reached; then the delivery is
  dropped and counted.
- Delivery faults from ``FaultConfig.webhooks`` (drop, duplicate, delay, reorder) are drawn
  from the dispatcher's own ``random.Random(seed)``: four draws per delivery, in publish
  order, so a seed replays the same faults.
- ``dispatcher.deliveries`` is the full log (attempts with time, status or error).

Pausing, as Close does ("We will automatically pause webhook subscriptions to which all
event delivery fails for 3 days"; a backlog of 100k queued events pauses one too), with
``PausePolicy`` thresholds measured on the dispatcher's clock: when every attempt to a
subscription has failed for ``failing_for`` seconds (from the first failure of an unbroken
run; any success ends the run), or its queued deliveries reach ``backlog``, the dispatcher
writes ``status: "paused"`` into the subscription record (the simulator's, so
``GET /webhook/`` shows it), drops its queued deliveries (``drop_reason="paused"``), records
a ``Pause`` in ``dispatcher.pauses`` and calls ``on_pause``. A paused subscription gets
nothing: no new event is queued for it and nothing queued is attempted. It stays paused
until its owner sets it back, ``PUT /webhook/{id}/ {"status": "active"}``; new events are
then delivered again, but the ones missed while it was failing or paused are not.

What a consumer (the workflow runtime) must do: notice the pause (poll ``GET /webhook/``
for its subscription's ``status``, or notice deliveries stop), fix its receiver, set the
subscription back to ``active``, then catch up from the Event Log (``GET /event/`` since
the last event it processed: Close keeps 30 days and has no replay endpoint). A record the
dispatcher cannot write (a frozen ``Subscription``) is not paused; ``on_pause`` is then how
its owner learns of it.

Two ways to run it: ``start()``/``stop()`` (or ``async with dispatcher``) runs a background
task on the clock; ``await run_due()`` (attempt what is due now) and ``await drain()``
(attempt everything, moving a ``FakeClock`` to each next due time) are deterministic for tests.

``extra_filter`` supports Close's filter language: ``{"type": "field_accessor", "field": f,
"filter": ...}`` (step into a field of the event, e.g. ``data``), ``equals``, ``not_equals``,
``is_null``, ``non_null``, ``contains`` (item in a list, or substring of a string), ``and``/
``or`` (``filters``) and ``not`` (``filter``). As a shorthand, a mapping without ``type`` is
field equality on dotted paths: ``{"data.status_id": "stat_x", "lead_id": "lead_y"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import httpx

from closeguard.simulator.clock import Clock, FakeClock, SystemClock
from closeguard.simulator.faults import FaultConfig, FaultInjector, WebhookFaults

__all__ = [
    "Attempt",
    "Delivery",
    "EventFilter",
    "Pause",
    "PausePolicy",
    "RetryPolicy",
    "Subscription",
    "WebhookDispatcher",
    "match_extra_filter",
    "sign",
    "signed_headers",
    "verify_signature",
    "with_dispatcher",
]

USER_AGENT = "Close Webhooks (closeguard simulator)"
SIG_HASH = "close-sig-hash"
SIG_TIMESTAMP = "close-sig-timestamp"

Event = Mapping[str, Any]
ASGIApp = Callable[..., Any]


# -- signing -------------------------------------------------------------------------------


def _as_text(body: bytes | str) -> str:
    return body.decode("utf-8") if isinstance(body, bytes) else body


def sign(signature_key: str, timestamp: str, body: bytes | str) -> str:
    """``close-sig-hash`` for ``body`` sent at ``timestamp`` (hex-decoded key, sha256)."""
    payload = (timestamp + _as_text(body)).encode("utf-8")
    return hmac.new(bytes.fromhex(signature_key), payload, hashlib.sha256).hexdigest()


def signed_headers(signature_key: str, body: bytes | str, now: float) -> dict[str, str]:
    """The two signature headers for ``body`` sent at epoch ``now``."""
    timestamp = str(int(now))
    return {SIG_HASH: sign(signature_key, timestamp, body), SIG_TIMESTAMP: timestamp}


def verify_signature(
    signature_key: str,
    timestamp: str,
    body: bytes | str,
    sig: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``sig`` is Close's signature of ``body`` at ``timestamp``, and is fresh.

    Constant-time comparison; ``False`` (never an exception) for a malformed key, timestamp
    or signature, or a timestamp more than ``tolerance`` seconds from ``now`` (default: the
    system clock).
    """
    try:
        sent_at = int(timestamp)
        expected = sign(signature_key, timestamp, body)
    except (ValueError, UnicodeDecodeError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        return False
    return hmac.compare_digest(expected.encode(), sig.strip().lower().encode())


# -- subscriptions and filters -------------------------------------------------------------

_MISSING = object()


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _dotted(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


def match_extra_filter(spec: Any, value: Any) -> bool:
    """Whether ``value`` (the event, at the top level) passes the ``extra_filter`` ``spec``."""
    if spec is None:
        return True
    if not isinstance(spec, Mapping):
        raise ValueError(f"extra_filter must be an object, not {type(spec).__name__}")
    kind = spec.get("type")
    if kind is None:
        return all(_dotted(value, path) == want for path, want in spec.items())
    if kind == "field_accessor":
        inner = value.get(spec["field"]) if isinstance(value, Mapping) else None
        return match_extra_filter(spec["filter"], inner)
    if kind == "equals":
        return bool(value == spec.get("value"))
    if kind == "not_equals":
        return bool(value != spec.get("value"))
    if kind == "is_null":
        return value is None
    if kind == "non_null":
        return value is not None
    if kind == "contains":
        want = spec.get("value")
        if isinstance(value, str):
            return isinstance(want, str) and want in value
        return isinstance(value, list | tuple) and want in value
    if kind == "and":
        return all(match_extra_filter(f, value) for f in spec["filters"])
    if kind == "or":
        return any(match_extra_filter(f, value) for f in spec["filters"])
    if kind == "not":
        return not match_extra_filter(spec["filter"], value)
    raise ValueError(f"unknown extra_filter type {kind!r}")


@dataclass(frozen=True)
class EventFilter:
    """One entry of a subscription's ``events``: object type, action, optional extra filter."""

    object_type: str
    action: str
    extra_filter: Mapping[str, Any] | None = None

    def matches(self, event: Event) -> bool:
        return (
            event.get("object_type") == self.object_type
            and event.get("action") == self.action
            and match_extra_filter(self.extra_filter, event)
        )


@dataclass(frozen=True)
class Subscription:
    """A webhook subscription as the dispatcher needs it (``from_any`` reads dicts/objects)."""

    id: str
    url: str
    events: tuple[EventFilter, ...]
    signature_key: str = field(repr=False)
    status: str = "active"
    verify_ssl: bool = True

    @classmethod
    def from_any(cls, obj: Any) -> Subscription:
        if isinstance(obj, Subscription):
            return obj
        events = tuple(
            EventFilter(
                object_type=_get(e, "object_type"),
                action=_get(e, "action"),
                extra_filter=_get(e, "extra_filter"),
            )
            for e in _get(obj, "events", ()) or ()
        )
        return cls(
            id=_get(obj, "id"),
            url=_get(obj, "url"),
            events=events,
            signature_key=_get(obj, "signature_key"),
            status=_get(obj, "status", "active") or "active",
            verify_ssl=bool(_get(obj, "verify_ssl", True)),
        )

    @property
    def active(self) -> bool:
        return self.status == "active"

    def matches(self, event: Event) -> bool:
        return self.active and any(f.matches(event) for f in self.events)


# -- deliveries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off between attempts; a delivery is dropped past either bound."""

    base: float = 10.0
    factor: float = 2.0
    max_delay: float = 6 * 3600.0
    max_attempts: int | None = None
    max_age: float = 72 * 3600.0
    timeout: float = 10.0

    def delay(self, attempts_made: int) -> float:
        """Seconds to wait after the ``attempts_made``-th failed attempt (1-based)."""
        return float(min(self.max_delay, self.base * self.factor ** (attempts_made - 1)))


@dataclass(frozen=True)
class Attempt:
    """One POST: when (epoch), the status code or the error class name, and how long."""

    at: float
    status: int | None
    error: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class PausePolicy:
    """When the dispatcher pauses a subscription (Close's values by default).

    ``failing_for``: seconds of an unbroken run of failed attempts (3 days). ``backlog``:
    deliveries queued for one subscription (100,000).
    """

    failing_for: float = 3 * 24 * 3600.0
    backlog: int = 100_000


PauseReason = Literal["failing", "backlog"]


@dataclass(frozen=True)
class Pause:
    """One automatic pause: which subscription, when (epoch) and why."""

    subscription_id: str
    at: float
    reason: PauseReason


DeliveryState = Literal["pending", "delivered", "dropped"]
DropReason = Literal["fault", "max_attempts", "max_age", "paused"]


@dataclass(eq=False)
class Delivery:
    """One event on its way to one subscription, with its attempt history."""

    id: str
    subscription_id: str
    url: str
    event_id: str | None
    event_type: str
    body: bytes = field(repr=False)
    signature_key: str = field(repr=False)
    verify_ssl: bool
    created_at: float
    next_at: float
    seq: int
    state: DeliveryState = "pending"
    drop_reason: DropReason | None = None
    faults: tuple[str, ...] = ()
    duplicate_of: str | None = None
    held: bool = False
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded

    @property
    def delivered_at(self) -> float | None:
        return self.attempts[-1].at if self.state == "delivered" else None


SubscriptionSource = Callable[[], Iterable[Any]]


_RESERVED_TLDS = frozenset({"test", "invalid", "example"})
"""RFC 2606 names that never resolve: a delivery there fails at once, with no DNS lookup."""


class _Unresolvable(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(
            f"{request.url.host}: reserved name, never resolves", request=request
        )


class WebhookDispatcher:
    """Queue, sign, deliver and retry webhook deliveries on a ``Clock``.

    ``subscriptions``: an iterable or a zero-argument callable returning one (read at each
    ``publish``), of dicts/objects with ``id, url, events, signature_key, status``.
    ``faults``: a ``FaultInjector`` (its live ``config.webhooks``, off when it is disabled),
    a ``FaultConfig``, or ``None``. ``pause``: when to pause a failing or backed-up
    subscription; ``on_pause(pause)`` is called after each. ``client_factory(verify_ssl)``
    builds the httpx client for real URLs (default: ``httpx.AsyncClient``). Everything runs
    on one event loop.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        faults: FaultInjector | FaultConfig | None = None,
        seed: int = 0,
        *,
        subscriptions: SubscriptionSource | Iterable[Any] | None = None,
        retry: RetryPolicy | None = None,
        pause: PausePolicy | None = None,
        on_pause: Callable[[Pause], None] | None = None,
        client_factory: Callable[[bool], httpx.AsyncClient] | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.faults = faults
        self.retry = retry or RetryPolicy()
        self.pause = pause or PausePolicy()
        self.on_pause = on_pause
        self.subscriptions = subscriptions
        self.deliveries: list[Delivery] = []
        self.pauses: list[Pause] = []
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._seq = itertools.count(1)
        self._pending: dict[str, Delivery] = {}
        self._queued: Counter[str] = Counter()
        self._failing_since: dict[str, float] = {}
        self._records: dict[str, Any] = {}
        self._mounts: dict[str, httpx.AsyncClient] = {}
        self._clients: dict[bool, httpx.AsyncClient] = {}
        self._unresolvable = httpx.AsyncClient(transport=_Unresolvable())
        self._client_factory = client_factory
        self._lock = asyncio.Lock()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # -- wiring ----------------------------------------------------------------------

    def mount(self, prefix: str, app: ASGIApp) -> None:
        """Deliver URLs starting with ``prefix`` (``http://hooks.test``) to ``app`` in process."""
        self._mounts[prefix.rstrip("/")] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), timeout=self.retry.timeout
        )

    def _client_for(self, url: str, verify_ssl: bool) -> httpx.AsyncClient:
        best = max(
            (p for p in self._mounts if url == p or url.startswith((p + "/", p + "?"))),
            key=len,
            default=None,
        )
        if best is not None:
            return self._mounts[best]
        if httpx.URL(url).host.rsplit(".", 1)[-1] in _RESERVED_TLDS:
            return self._unresolvable
        client = self._clients.get(verify_ssl)
        if client is None:
            if self._client_factory is not None:
                client = self._client_factory(verify_ssl)
            else:
                client = httpx.AsyncClient(timeout=self.retry.timeout, verify=verify_ssl)
            self._clients[verify_ssl] = client
        return client

    def _webhook_faults(self) -> WebhookFaults | None:
        faults = self.faults
        config = faults.config if isinstance(faults, FaultInjector) else faults
        if config is None or not config.enabled:
            return None
        return config.webhooks

    # -- queueing --------------------------------------------------------------------

    def _read_subscriptions(self, records: Iterable[Any] | None = None) -> list[Subscription]:
        """The subscriptions now (``records``, else the source), remembering their records."""
        if records is None:
            source = self.subscriptions
            if source is None:
                return []
            records = source() if callable(source) else source
        subs: list[Subscription] = []
        for record in records:
            sub = Subscription.from_any(record)
            self._records[sub.id] = record
            subs.append(sub)
        return subs

    def publish(self, event: Event, subscriptions: Iterable[Any] | None = None) -> list[Delivery]:
        """Queue ``event`` for every matching active subscription; returns the new deliveries."""
        created: list[Delivery] = []
        for sub in self._read_subscriptions(subscriptions):
            if sub.matches(event):
                created += self._enqueue(sub, event)
        if created and self._wakeup is not None:
            self._wakeup.set()
        return created

    on_event = publish

    def _new_delivery(self, sub: Subscription, event: Event, body: bytes) -> Delivery:
        now = self.clock.now()
        seq = next(self._seq)
        return Delivery(
            id=f"whdel_{seq:06d}",
            subscription_id=sub.id,
            url=sub.url,
            event_id=event.get("id"),
            event_type=f"{event.get('object_type')}.{event.get('action')}",
            body=body,
            signature_key=sub.signature_key,
            verify_ssl=sub.verify_ssl,
            created_at=now,
            next_at=now,
            seq=seq,
        )

    def _enqueue(self, sub: Subscription, event: Event) -> list[Delivery]:
        body = json.dumps({"subscription_id": sub.id, "event": event}, default=str).encode()
        delivery = self._new_delivery(sub, event, body)
        self.deliveries.append(delivery)
        self.stats["published"] += 1
        faults = self._webhook_faults()
        decision = FaultInjector.decide_webhook(faults, self._rng) if faults else None
        if decision is not None and decision.drop:
            delivery.state, delivery.drop_reason = "dropped", "fault"
            delivery.faults = ("dropped",)
            self.stats["dropped_fault"] += 1
            return [delivery]
        out = [delivery]
        if decision is not None and faults is not None:
            if decision.delay:
                delivery.next_at += decision.delay
                delivery.faults += ("delayed",)
                self.stats["delayed"] += 1
            if decision.reorder:
                delivery.held = True
                delivery.next_at += faults.reorder_hold_seconds
                delivery.faults += ("reordered",)
                self.stats["reordered"] += 1
            if decision.duplicate:
                twin = self._new_delivery(sub, event, body)
                twin.next_at = delivery.next_at
                twin.duplicate_of = delivery.id
                twin.faults = ("duplicate",)
                self.deliveries.append(twin)
                self.stats["duplicated"] += 1
                out.append(twin)
        self._release_held(sub.id, after=out[-1])
        for item in out:
            self._pending[item.id] = item
            self._queued[sub.id] += 1
        if self._queued[sub.id] >= self.pause.backlog:
            self._pause(sub.id, "backlog")
        return out

    def _release_held(self, subscription_id: str, *, after: Delivery) -> None:
        for held in self._pending.values():
            if held.held and held.subscription_id == subscription_id:
                held.held = False
                held.next_at = max(after.next_at, self.clock.now())
                held.seq = next(self._seq)

    # -- delivering ------------------------------------------------------------------

    @property
    def pending(self) -> list[Delivery]:
        """Deliveries still to attempt, in the order they will go."""
        return sorted(self._pending.values(), key=lambda d: (d.next_at, d.seq))

    def next_due(self) -> float | None:
        """Epoch time of the next attempt, if any is queued."""
        return min((d.next_at for d in self._pending.values()), default=None)

    async def run_due(self) -> int:
        """Attempt every delivery due now (in due order); returns how many were attempted.

        A delivery whose subscription is no longer active is dropped, not attempted.
        """
        async with self._lock:
            now = self.clock.now()
            due = [d for d in self.pending if d.next_at <= now]
            if due:
                self._read_subscriptions()
            attempted = 0
            for delivery in due:
                if delivery.id not in self._pending:
                    continue  # dropped by a pause earlier in this round
                if not self._active(delivery.subscription_id):
                    self._give_up(delivery, "paused")
                    continue
                await self._attempt(delivery)
                attempted += 1
            return attempted

    async def drain(self, *, max_seconds: float | None = None) -> None:
        """Attempt until nothing is pending, waiting on the clock for each next due time.

        With a ``FakeClock`` time jumps straight to each due time; with the system clock this
        really waits. ``max_seconds`` (default: the retry ``max_age`` plus a margin) bounds it.
        """
        limit = self.retry.max_age + 3600 if max_seconds is None else max_seconds
        deadline = self.clock.now() + limit
        while True:
            await self.run_due()
            nxt = self.next_due()
            if nxt is None:
                return
            if nxt > deadline:
                raise TimeoutError(f"deliveries still pending after {limit} s")
            if isinstance(self.clock, FakeClock):
                self.clock.advance_to(nxt)
            else:
                await self.clock.sleep(nxt - self.clock.now())

    async def _attempt(self, delivery: Delivery) -> None:
        started = self.clock.now()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(delivery.signature_key, delivery.body, started),
        }
        client = self._client_for(delivery.url, delivery.verify_ssl)
        status: int | None = None
        error: str | None = None
        tick = time.perf_counter()
        try:
            response = await client.post(
                delivery.url, content=delivery.body, headers=headers, timeout=self.retry.timeout
            )
            status = response.status_code
        except Exception as exc:  # any failure of a subscriber is a failed attempt
            error = type(exc).__name__
        attempt = Attempt(started, status, error, time.perf_counter() - tick)
        delivery.attempts.append(attempt)
        self.stats["attempts"] += 1
        sub_id = delivery.subscription_id
        if attempt.ok:
            delivery.state = "delivered"
            self._dequeue(delivery)
            self._failing_since.pop(sub_id, None)
            self.stats["delivered"] += 1
            return
        self.stats["failed_attempts"] += 1
        made = len(delivery.attempts)
        next_at = self.clock.now() + self.retry.delay(made)
        if self.retry.max_attempts is not None and made >= self.retry.max_attempts:
            self._give_up(delivery, "max_attempts")
        elif next_at - delivery.created_at > self.retry.max_age:
            self._give_up(delivery, "max_age")
        else:
            delivery.next_at = next_at
        failing_since = self._failing_since.setdefault(sub_id, started)
        if started - failing_since >= self.pause.failing_for:
            self._pause(sub_id, "failing")

    def _dequeue(self, delivery: Delivery) -> None:
        if self._pending.pop(delivery.id, None) is not None:
            self._queued[delivery.subscription_id] -= 1

    def _give_up(self, delivery: Delivery, reason: DropReason) -> None:
        delivery.state, delivery.drop_reason = "dropped", reason
        self._dequeue(delivery)
        self.stats["dropped"] += 1

    # -- pausing ---------------------------------------------------------------------

    def _active(self, subscription_id: str) -> bool:
        record = self._records.get(subscription_id)
        return record is None or (_get(record, "status", "active") or "active") == "active"

    def _pause(self, subscription_id: str, reason: PauseReason) -> None:
        """Pause a subscription: mark its record, drop what is queued for it, tell the owner."""
        record = self._records.get(subscription_id)
        if isinstance(record, MutableMapping):
            record["status"] = "paused"
        elif record is not None:
            with contextlib.suppress(AttributeError):
                record.status = "paused"
        self._failing_since.pop(subscription_id, None)
        for delivery in [d for d in self._pending.values() if d.subscription_id == subscription_id]:
            self._give_up(delivery, "paused")
        pause = Pause(subscription_id, self.clock.now(), reason)
        self.pauses.append(pause)
        self.stats["paused"] += 1
        if self.on_pause is not None:
            self.on_pause(pause)

    # -- background task -------------------------------------------------------------

    def start(self) -> None:
        """Run deliveries in a background task on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop the background task (queued deliveries stay queued)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wakeup = None

    async def aclose(self) -> None:
        """Stop, and close the HTTP clients."""
        await self.stop()
        for client in [*self._mounts.values(), *self._clients.values(), self._unresolvable]:
            await client.aclose()
        self._clients.clear()

    async def __aenter__(self) -> WebhookDispatcher:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _loop(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        while True:
            wakeup.clear()
            await self.run_due()
            nxt = self.next_due()
            if nxt is not None and nxt <= self.clock.now():
                continue
            waiters: set[asyncio.Task[Any]] = {asyncio.ensure_future(wakeup.wait())}
            if nxt is not None:
                waiters.add(asyncio.ensure_future(self.clock.sleep(nxt - self.clock.now())))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


def with_dispatcher(app: ASGIApp, dispatcher: WebhookDispatcher) -> ASGIApp:
    """``app`` with ``dispatcher`` running for the server's lifetime (ASGI lifespan).

    For serving: ``uvicorn.run(with_dispatcher(sim.app, sim.webhooks), ...)`` starts the
    background delivery task at startup and stops it (closing its clients) at shutdown.
    """

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                dispatcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await dispatcher.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped
