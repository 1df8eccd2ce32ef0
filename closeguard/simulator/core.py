"""``Simulator``: one simulated Close organization, its ASGI app and the ways to drive it.

    sim = Simulator(seed=1, leads=50)              # a generated world
    async with sim.client() as close:              # a CloseClient wired in process
        lead = await close.request("GET", "/lead/")
    sim.state_hash(); before = sim.snapshot(); ...; sim.diff(before)

Everything runs in one event loop without locks: each request handler validates fully,
then mutates, so requests are atomic. Rate limits (``rate_limits=``), faults (``faults=``)
and extra ``middleware`` wrap the app; ``on_event`` listeners see every committed event,
and ``sim.webhooks`` (a ``WebhookDispatcher`` reading the org's subscriptions) is one of
them, so subscriptions created through the API receive signed deliveries once the
dispatcher runs (``await sim.webhooks.drain()`` or ``sim.webhooks.start()``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from closeguard.simulator.app import ASGIApp, Backend, Middleware, build_app
from closeguard.simulator.clock import Clock, SystemClock
from closeguard.simulator.events import EventListener, EventLog
from closeguard.simulator.faults import FaultConfig, FaultInjector, FaultMiddleware
from closeguard.simulator.hashing import Snapshot, StateDiff, diff, snapshot, state_hash
from closeguard.simulator.ratelimit import Callers, RateLimiter, RateLimitMiddleware, RateLimits
from closeguard.simulator.state import ApiKey, Obj, OrgState, base62, from_epoch
from closeguard.simulator.webhooks import WebhookDispatcher
from closeguard.simulator.world import generate_world, load_world, save_world
from closeguard.tools import catalog
from closeguard.tools.catalog import API_PREFIX
from closeguard.tools.client import CloseClient

__all__ = ["BASE_URL", "Simulator"]

BASE_URL = "http://simulator.local/api/v1"

IN_PROCESS_LIMITS = RateLimits(read_rps=2000, write_rps=1000)
"""Default limits in process: far above what a test makes, so nothing is slowed, yet
every response carries a real ``RateLimit`` header. ``rate_limits=None`` turns them off;
``closeguard sim serve`` defaults to Close-like ``RateLimits()`` (40 reads, 20 writes/s)."""


class Simulator:
    """A Close organization in memory, served as an ASGI app.

    ``seed``/``leads``/``anchor``: the generated world (same arguments, same world, ids
    included; ``anchor`` defaults to the clock's current day). ``world``: use this state
    instead (and ``events`` as its Event Log). ``clock``: time for timestamps, event
    retention, rate-limit windows and webhook retries (``FakeClock`` in tests).
    ``api_keys``: extra credentials, a list (mapped to the first user) or a mapping
    key -> user id. ``rate_limits``: limits per key and group (``IN_PROCESS_LIMITS`` by
    default, ``None`` for none). ``faults``: enables fault injection.
    ``middleware``: more ASGI wrappers, first outermost (inside faults and rate limits).
    ``on_event``: listeners called with each committed event (a callable or several).
    """

    def __init__(
        self,
        seed: int = 0,
        leads: int = 20,
        *,
        anchor: datetime | None = None,
        world: OrgState | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
        api_keys: Iterable[str] | Mapping[str, str] | None = None,
        rate_limits: RateLimits | None = IN_PROCESS_LIMITS,
        faults: FaultConfig | None = None,
        middleware: Sequence[Middleware] = (),
        on_event: EventListener | Sequence[EventListener] | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        if world is None:
            if anchor is None:
                now = from_epoch(self.clock.now())
                anchor = now.replace(hour=12, minute=0, second=0, microsecond=0)
            world = generate_world(seed, leads, anchor)
        self.state: OrgState = world
        self._backend = Backend(state=world, log=events or EventLog(), clock=self.clock)
        self.api_key: str = next(iter(world.api_keys), "") or self.add_api_key()
        if isinstance(api_keys, Mapping):
            for key, user_id in api_keys.items():
                self.add_api_key(key, user_id=user_id)
        else:
            for key in api_keys or ():
                self.add_api_key(key)

        self.limiter = RateLimiter(rate_limits, self.clock) if rate_limits is not None else None
        self.faults = FaultInjector(faults, seed) if faults is not None else None
        self.webhooks = WebhookDispatcher(
            self.clock,
            self.faults,
            seed,
            subscriptions=lambda: list(self.state["webhooks"].values()),
            on_pause=lambda _pause: self.state.touch(),
        )
        listeners: list[EventListener] = [self._publish_webhooks]
        if callable(on_event):
            listeners.append(on_event)
        elif on_event is not None:
            listeners.extend(on_event)
        self._backend.listeners.extend(listeners)

        layers: list[Middleware] = []
        callers = Callers(org_of=self._backend.organization_of)
        if self.faults is not None:
            injector, limiter = self.faults, self.limiter
            layers.append(
                lambda app: FaultMiddleware(
                    app, injector, self.clock, limiter=limiter, caller_of=callers
                )
            )
        if self.limiter is not None:
            rate_limiter = self.limiter
            layers.append(lambda app: RateLimitMiddleware(app, rate_limiter, caller_of=callers))
        layers.extend(middleware)
        self.app: ASGIApp = build_app(self._backend, layers)

    def __repr__(self) -> str:
        return f"Simulator(seed={self.state.seed}, leads={len(self.state['leads'])})"

    # -- credentials -----------------------------------------------------------------

    def add_api_key(self, key: str | None = None, *, user_id: str | None = None) -> str:
        """Accept one more credential (Basic username or Bearer token) for ``user_id``."""
        users = self.state["users"]
        owner = user_id or next(iter(users))
        if owner not in users:
            raise ValueError(f"unknown user {owner!r}")
        if key is None:
            digest = hashlib.sha256(f"{self.state.seed}:{len(self.state.api_keys)}".encode())
            key = f"api_{base62(digest.digest(), 22)}.sim"
        self.state.api_keys[key] = ApiKey(id=self.state.ids.new("api"), user_id=owner)
        return key

    # -- wiring ----------------------------------------------------------------------

    def transport(self) -> httpx.ASGITransport:
        """An httpx transport that calls the app in process."""
        return httpx.ASGITransport(app=self.app)

    def client(self, **kwargs: Any) -> CloseClient:
        """A ``CloseClient`` for this organization (in process, the default key).

        The client waits on the simulator's clock: on a ``FakeClock`` a 429 (or a retry
        after a fault) advances fake time instead of sleeping.
        """
        kwargs.setdefault("api_key", self.api_key)
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("base_url", BASE_URL)
        kwargs.setdefault("transport", self.transport())
        return CloseClient(**kwargs)

    def http_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """A plain ``httpx.AsyncClient`` on the app, authenticated with the default key."""
        kwargs.setdefault("auth", (self.api_key, ""))
        kwargs.setdefault("base_url", BASE_URL)
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    def call(
        self,
        name: str,
        body: Any = None,
        *,
        path_params: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """Run catalog endpoint ``name`` straight on the state, as the default key: the
        handler's validation, events and listeners, without HTTP or middleware (no rate
        limits, faults or request count). The response body; ``ApiError`` if refused.

        About 40x faster than a request, for seeding large worlds (``bench/soak.py``
        creates 30,000 leads) with the very objects and events the API would make.
        """
        endpoint = catalog.endpoint(name)
        params = dict(path_params or {})
        path = API_PREFIX + endpoint.path.format(**params)
        key = self.state.api_keys[self.api_key]
        if body is None and endpoint.method in ("POST", "PUT"):
            body = {}
        _status, payload = self._backend.dispatch(
            endpoint, key, path_params=params, query=dict(query or {}), body=body, path=path
        )
        return payload

    def _publish_webhooks(self, event: Obj) -> None:
        self.webhooks.publish(event)

    # -- observation -----------------------------------------------------------------

    @property
    def log(self) -> EventLog:
        return self._backend.log

    @property
    def events(self) -> list[Obj]:
        """Every event still in the log, oldest first."""
        return self._backend.log.events()

    @property
    def request_count(self) -> Counter[str]:
        """Requests received: ``["total"]`` and one count per endpoint name."""
        return self._backend.request_count

    def state_hash(self, ignore_fields: Iterable[str] = ()) -> str:
        return state_hash(self.state, ignore_fields)

    def snapshot(self, ignore_fields: Iterable[str] = ()) -> Snapshot:
        return snapshot(self.state, ignore_fields)

    def diff(self, before: Snapshot, ignore_fields: Iterable[str] = ()) -> StateDiff:
        """What changed since ``before`` (a ``snapshot()``)."""
        return diff(before, snapshot(self.state), ignore_fields)

    # -- files -----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        save_world(path, self.state, self._backend.log)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Simulator:
        """A simulator on a saved world; ``WorldFileError`` if the file is bad."""
        state, log = load_world(path)
        return cls(world=state, events=log, **kwargs)
