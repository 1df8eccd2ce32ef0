"""The runtime: intake (receiver, Event Log catch-up, subscription upkeep), schedules and
workers, composed in one process or started part by part.

::

    async with open_checkpointer(path) as saver:
        runtime = Runtime(workflows, store=store, checkpointer=saver, api_key=key)
        await runtime.run(stop)          # until stop is set, then a graceful end

Roles: ``receiver`` (the webhook receiver on uvicorn, Event Log catch-up, the subscription's
sync and pause checks), ``scheduler`` (APScheduler ticks into the inbox), ``worker`` (runs
from the queue, approvals noticed). ``all`` is the default; each role is a component of its
own, so a process can run any subset against a shared store. A stopping runtime lets runs
in progress finish for ``grace`` seconds, then releases the rest to be claimed again.

On a PostgreSQL store the run queue is procrastinate's (``queue_pg.queue_for``) and every
client shares one Close rate budget (``store.budget.budget_for``: Redis when
``CLOSEGUARD_REDIS_URL`` is set), so any number of processes on any number of machines
split the work and stay under Close's limits together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver

from closeguard.guardrails import Guarded, Policy
from closeguard.store import Store
from closeguard.store.cursors import Cursors
from closeguard.store.health import readiness, sample
from closeguard.telemetry import Probes, metrics
from closeguard.tools import CloseClient
from closeguard.tools.clock import Clock, SystemClock
from closeguard.tools.errors import ConfigError
from closeguard.workflows.activity import Activity, Feed
from closeguard.workflows.budget import budget_for
from closeguard.workflows.catchup import CatchUp
from closeguard.workflows.definition import EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.facts import DEFAULT_TTL, OrgFacts
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue_pg import queue_for
from closeguard.workflows.receiver import DEFAULT_PATH, build_receiver_app, serve
from closeguard.workflows.retention import PruneReport, prune
from closeguard.workflows.schedules import Schedules, Upkeep
from closeguard.workflows.subscriptions import Subscriptions, intake_pairs, wants
from closeguard.workflows.worker import Worker

__all__ = ["ROLES", "Role", "Runtime", "RuntimeConfig"]

log = logging.getLogger("closeguard.workflows.runtime")

Role = Literal["receiver", "scheduler", "worker"]
ROLES: tuple[Role, ...] = ("receiver", "scheduler", "worker")
PARTS: dict[Role, str] = {"receiver": "receiver", "scheduler": "scheduler", "worker": "workers"}
"""The name each role's part has in ``/readyz``."""
INTAKE_POLICY = "event-intake"
INTAKE_ACTOR = "closeguard-intake"


@dataclass(frozen=True)
class RuntimeConfig:
    """How the runtime runs.

    ``listen``: where the receiver listens (port 0: any free port). ``public_url``: the
    receiver's address as Close reaches it; with it (or ``subscribe``, which uses the
    listening address) the subscription is synced on start and checked for pauses.
    ``shared_budget``: every client shares its key's Close rate budget with the other
    processes on the store (PostgreSQL, or Redis with ``CLOSEGUARD_REDIS_URL``).
    ``catchup_every``: seconds between Event Log catch-up passes; ``subscription_every``:
    between checks that the webhook subscription is active (upkeep); ``lease``: seconds a
    claimed run stays its worker's without a heartbeat; ``facts_ttl``: seconds the
    organization facts are kept at most (events that change them drop them sooner).
    ``retain``: with the ``scheduler`` role, prune what finished more than ``retain``
    seconds ago, at start and then every ``retain_every`` seconds (``closeguard run
    --retain``), archiving audit rows to ``retain_archive`` (default beside the store) and
    removing the runs' checkpoints from ``checkpoints`` (the SQLite file).
    """

    roles: frozenset[Role] = frozenset(ROLES)
    listen: tuple[str, int] = ("127.0.0.1", 8787)
    public_url: str | None = None
    subscribe: bool = False
    catchup: bool = True
    catchup_every: float = 60.0
    subscription_every: float = 60.0
    concurrency: int = 4
    lease: float = 60.0
    grace: float = 10.0
    poll: float = 0.5
    approvals_every: float = 2.0
    shared_budget: bool = True
    facts_ttl: float = DEFAULT_TTL
    retain: float | None = None
    retain_every: float = 86400.0
    retain_archive: Path | None = None
    checkpoints: Path | None = None


@dataclass
class _Parts:
    receiver_url: str | None = None
    subscriptions: Subscriptions | None = None
    catchup: CatchUp | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[Role, asyncio.Task[None]] = field(default_factory=dict)


class Runtime:
    """Everything ``closeguard run`` runs, for ``workflows`` against one Close (or simulator).

    ``transport``/``base_url``/``api_key``: how to reach Close (a simulator's transport and
    base URL in tests and the embedded demo). ``probes``: the ``/readyz`` checks this runtime
    adds its parts to (the store, its migrations, and each role's component), served by its
    receiver and, when the caller shares them, by the console.
    """

    def __init__(
        self,
        workflows: Iterable[Workflow],
        *,
        store: Store,
        checkpointer: BaseCheckpointSaver[Any],
        api_key: str,
        transport: httpx.AsyncBaseTransport | None = None,
        base_url: str | None = None,
        clock: Clock | None = None,
        llm: BaseChatModel | None = None,
        config: RuntimeConfig | None = None,
        feed: Feed | None = None,
        probes: Probes | None = None,
    ) -> None:
        self.workflows: Mapping[str, Workflow] = {w.name: w for w in workflows}
        self.store = store
        self.config = config or RuntimeConfig()
        self.clock = clock or SystemClock()
        self.feed = feed or Feed()
        self.api_key = api_key
        self.base_url = base_url
        self.queue = queue_for(store, clock=self.clock, lease=self.config.lease)
        self.budget = budget_for(store, api_key) if self.config.shared_budget else None
        self.inbox = Inbox(store, self.workflows.values(), self.queue)
        self.executor = Executor(
            store=store,
            checkpointer=checkpointer,
            api_key=api_key,
            transport=transport,
            base_url=base_url,
            clock=self.clock,
            llm=llm,
            feed=self.feed,
            budget=self.budget,
            facts=OrgFacts(clock=self.clock, ttl=self.config.facts_ttl),
        )
        self.worker = Worker(
            self.queue,
            self.executor,
            self.workflows,
            store=store,
            concurrency=self.config.concurrency,
            poll=self.config.poll,
            heartbeat=self.config.lease / 3,
            approvals_every=self.config.approvals_every,
            feed=self.feed,
        )
        upkeep = []
        if self.config.retain is not None:
            upkeep.append(Upkeep("retention", self.prune, self.config.retain_every))
        self.schedules = Schedules(
            self.inbox, self.workflows.values(), feed=self.feed, upkeep=upkeep
        )
        if "worker" in self.config.roles:
            self.inbox.lanes = self.worker
        self.inbox.listeners.append(self._on_event)
        self.inbox.listeners.append(self.executor.facts.observe)
        self.parts = _Parts()
        self.probes = probes or Probes()
        self.probes.add("store", functools.partial(readiness, store))
        for role in self.config.roles:  # the receiver, once listening, adds a finer check
            self.probes.part(PARTS[role], functools.partial(self._why_not, role))

    def _why_not(self, role: Role) -> str | None:
        """Why ``role``'s component is not ready (not started, or stopped), or None."""
        task = self.parts.running.get(role)
        if task is None:
            return "not started"
        return "stopped" if task.done() else None

    async def prune(self) -> PruneReport | None:
        """Prune what finished more than ``config.retain`` seconds ago, off the event loop;
        a failure is logged and left for the next day."""
        retain = self.config.retain
        if retain is None:
            return None
        before = datetime.fromtimestamp(time.time() - retain, UTC)
        try:
            report = await asyncio.to_thread(
                prune,
                self.store,
                before,
                archive_dir=self.config.retain_archive,
                checkpoints=self.config.checkpoints,
            )
        except Exception as exc:
            log.warning("the daily prune failed: %s", exc)
            self.feed.emit(Activity("note", f"prune failed: {exc}"))
            return None
        text = (
            f"pruned {report.runs} runs, {report.inbox} inbox rows, {report.audit_rows} audit "
            f"rows" + (f" (archived to {report.archive})" if report.anchor is not None else "")
        )
        log.info("%s", text)
        self.feed.emit(Activity("note", text))
        return report

    def _on_event(self, event: Mapping[str, Any], source: str, new: bool) -> None:
        if new:
            for workflow in self.workflows.values():
                if isinstance(workflow.trigger, EventTrigger) and workflow.trigger.matches(event):
                    self.worker.nudge(self.inbox.queued_by)
        text = f"{event.get('object_type')}.{event.get('action')} {event.get('id')} ({source})"
        self.feed.emit(Activity("event", text, status="new" if new else "duplicate"))

    @property
    def ready(self) -> asyncio.Event:
        """Set once every component has started (the receiver is listening)."""
        return self.parts.ready

    @property
    def receiver_url(self) -> str | None:
        """The receiver's webhook URL once it listens."""
        return self.parts.receiver_url

    def intake_client(self) -> CloseClient:
        """The client of catch-up and subscription upkeep, under the ``event-intake`` policy."""
        return CloseClient(
            self.api_key,
            base_url=self.base_url,
            transport=self.executor.transport,
            policy=Guarded(Policy.load(INTAKE_POLICY), store=self.store),
            actor=INTAKE_ACTOR,
            clock=self.clock,
            budget=self.budget,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run the configured roles until ``stop`` is set, then end gracefully."""
        metrics.set_sampler(repr(self.store), functools.partial(sample, self.store))
        try:
            await self._run(stop)
        finally:
            metrics.set_sampler(repr(self.store), None)

    async def _run(self, stop: asyncio.Event) -> None:
        await self.inbox.redispatch()
        roles = self.config.roles
        components: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
        if "receiver" in roles:
            components.append(self._intake)
        if "scheduler" in roles:
            components.append(self.schedules.run)
        if "worker" in roles:
            components.append(self.worker.run)
        tasks = [asyncio.create_task(c(stop)) for c in components]
        self.parts.running = dict(zip([r for r in ROLES if r in roles], tasks, strict=True))
        if "receiver" not in roles:
            self.ready.set()
        try:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            failed = [t.exception() for t in tasks if t.done() and not t.cancelled()]
            for exc in failed:
                if exc is not None:
                    raise exc
        finally:
            stop.set()
            _, late = await asyncio.wait(tasks, timeout=self.config.grace) if tasks else ((), ())
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _intake(self, stop: asyncio.Event) -> None:
        """Receiver on uvicorn, catch-up loop and subscription upkeep, until ``stop``."""
        cursors = Cursors(self.store)
        host, port = self.config.listen
        app = build_receiver_app(
            self.inbox, cursors.signature_keys, clock=self.clock, probes=self.probes
        )
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(self.intake_client())
            try:
                base = await stack.enter_async_context(serve(app, host, port))
            except OSError as exc:
                raise ConfigError(
                    f"the webhook receiver cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from exc
            self.parts.receiver_url = base + DEFAULT_PATH
            loops: list[asyncio.Task[Any]] = []
            if self.config.catchup:
                pairs = intake_pairs(self.workflows.values())
                catchup = CatchUp(
                    client, self.inbox, cursors, clock=self.clock, wanted=wants(pairs)
                )
                self.parts.catchup = catchup
                loops.append(asyncio.create_task(catchup.run_forever(self.config.catchup_every)))
            url = self.config.public_url or (self.receiver_url if self.config.subscribe else None)
            if url is not None and intake_pairs(self.workflows.values()):
                subs = Subscriptions(
                    client,
                    cursors,
                    url=url,
                    events=intake_pairs(self.workflows.values()),
                    on_reactivated=self.parts.catchup.trigger if self.parts.catchup else None,
                )
                self.parts.subscriptions = subs
                result = await subs.sync()
                await app.reload_keys()
                self.feed.emit(Activity("note", f"webhook subscription {result.action}: {url}"))
                loops.append(asyncio.create_task(self._keep_active(subs)))
            self.ready.set()
            try:
                await stop.wait()
            finally:
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)

    async def _keep_active(self, subs: Subscriptions) -> None:
        while True:
            await asyncio.sleep(self.config.subscription_every)
            try:
                if await subs.ensure_active():
                    self.feed.emit(Activity("note", "webhook subscription was paused: resumed"))
            except Exception as exc:
                log.warning("checking the webhook subscription failed: %s", exc)
