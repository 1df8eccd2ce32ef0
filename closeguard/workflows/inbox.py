"""The durable inbox: where every trigger enters, deduplicated, and becomes runs.

- ``add(event, source=...)``: a Close event (webhook delivery or Event Log entry), stored once
  per event id; each enabled workflow whose ``EventTrigger`` matches gets one run, keyed by
  (workflow, event id). When it returns, the event and its runs are durable.
- ``add_tick(workflow, tick)``: a schedule tick, one run per (schedule, tick time), so every
  process may fire schedules and each tick still runs once.
- ``add_manual(workflow, params)``: a run asked for by hand.

With the embedded queue on the same store, an event and its runs are written in one
transaction; with another queue, the event is stored first and marked dispatched once its
runs are queued, and ``redispatch`` queues what a crash left in between.

Every new event also tells what became of leads, deals and tasks (``store.fates``): a merge
goes into the merge map in the same transaction, and the unfinished runs of the merged-away
lead move to the destination's order (runs queued later for it go there at once); a
deletion is noted, so runs about the deleted object end ``skipped`` without a call.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection

from closeguard.store import Store
from closeguard.store.fates import LeadFates
from closeguard.store.inbox import EventRow, InboxRows
from closeguard.store.runs import RunRow
from closeguard.workflows.definition import EventTrigger, ManualTrigger, Workflow
from closeguard.workflows.queue import RunQueue, RunRequest, SqlRunQueue

__all__ = ["EventListener", "Inbox", "Lanes"]

EventListener = Callable[[Mapping[str, Any], str, bool], None]
"""Told of each event added: ``(event, source, new)``."""


class Lanes(Protocol):
    """A worker in this process that takes new runs claimed in the inbox's transaction."""

    @property
    def idle_lanes(self) -> int: ...

    def claim_in(self, conn: Connection, count: int) -> list[RunRow]: ...

    def take(self, runs: Sequence[RunRow], nudges: int) -> None: ...


def event_id(event: Mapping[str, Any]) -> str:
    value = event.get("id") if isinstance(event, Mapping) else None
    if not isinstance(value, str) or not value:
        raise ValueError("a Close event needs a non-empty string 'id'")
    return value


class Inbox:
    """Turns events, ticks and manual requests into deduplicated runs on ``queue``."""

    def __init__(
        self,
        store: Store,
        workflows: Iterable[Workflow],
        queue: RunQueue | None = None,
    ) -> None:
        self.store = store
        self.workflows = {w.name: w for w in workflows}
        self.queue: RunQueue = queue or SqlRunQueue(store)
        self.rows = InboxRows(store)
        self.fates = LeadFates(store)
        self.listeners: list[EventListener] = []
        self._same_store = isinstance(self.queue, SqlRunQueue) and self.queue.store is store
        self.lanes: Lanes | None = None
        self.queued_by: int | None = None
        """The store trip (``Store.trips``) that queued the last ``add``'s runs, when
        known: what its nudge says (``Worker.nudge``)."""
        """With the embedded queue on SQLite: new runs are claimed for this worker's idle
        lanes in the transaction that queues them (one trip to the store for both)."""

    def runs_for(self, event: Mapping[str, Any]) -> list[RunRequest]:
        """One run request per enabled workflow whose event trigger matches."""
        key = event_id(event)
        return [
            RunRequest(w.name, key, "event", {"event": dict(event)}, lead_id=w.lead_for(event))
            for w in self.workflows.values()
            if isinstance(w.trigger, EventTrigger) and w.trigger.matches(event)
        ]

    async def add(self, event: Mapping[str, Any], *, source: str) -> bool:
        """Store ``event`` and queue its runs; True if its id was new."""
        return await self.add_many([event], source=source) == 1

    async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
        """Store the events (a catch-up page) and queue their runs; how many were new."""
        by_id: dict[str, Mapping[str, Any]] = {}
        for event in events:
            by_id.setdefault(event_id(event), event)
        self.queued_by = None
        if self._same_store:
            self.queued_by = self.store.trips + 1  # the trip below
            new, claimed = await self.store.trip(
                self._add_in_one_transaction, list(by_id.values()), source
            )
            if self.lanes is not None and claimed:
                self.lanes.take(claimed, len(claimed))
        else:
            new = await self._add_then_queue(list(by_id.values()), source)
        fresh = set(new)
        for key, event in by_id.items():
            for listener in self.listeners:
                listener(event, source, key in fresh)
        return len(fresh)

    def _add_in_one_transaction(
        self, events: Sequence[Mapping[str, Any]], source: str
    ) -> tuple[list[str], list[RunRow]]:
        assert isinstance(self.queue, SqlRunQueue)
        claimed: list[RunRow] = []
        with self.store.engine.begin() as conn:
            new = self.rows.insert(conn, events, source)
            fresh = set(new)
            added = [e for e in events if e["id"] in fresh]
            for merged, destination in self.fates.note_events(conn, added):
                self.queue.rows.follow_merge(conn, merged, destination)
            requests = [r for e in added for r in self.runs_for(e)]
            rows = [self._followed(conn, r.as_row()) for r in requests]
            queued = self.queue.rows.insert(conn, rows)
            self.rows.mark_dispatched(conn, new)
            lanes = self.lanes
            if lanes is not None and queued and self.store.dialect == "sqlite":
                claimed = lanes.claim_in(conn, min(len(queued), lanes.idle_lanes))
        return new, claimed

    def _followed(self, conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
        """A run for a lead merged away goes into its last destination's order."""
        lead = row.get("lead_id")
        if lead:
            row["lead_id"] = self.fates.resolve_in(conn, str(lead)).lead
        return row

    def _insert(
        self, events: Sequence[Mapping[str, Any]], source: str
    ) -> tuple[list[str], list[tuple[str, str]]]:
        with self.store.engine.begin() as conn:
            new = self.rows.insert(conn, events, source)
            fresh = set(new)
            merges = self.fates.note_events(conn, [e for e in events if e["id"] in fresh])
            return new, merges

    def _mark(self, ids: Sequence[str]) -> None:
        with self.store.engine.begin() as conn:
            self.rows.mark_dispatched(conn, ids)

    async def _add_then_queue(self, events: Sequence[Mapping[str, Any]], source: str) -> list[str]:
        new, merges = await self.store.run(self._insert, events, source)
        fresh = set(new)
        for merged, destination in merges:
            await self.queue.follow_merge(merged, destination)
        await self.queue.enqueue([r for e in events if e["id"] in fresh for r in self.runs_for(e)])
        await self.store.run(self._mark, new)
        return new

    async def redispatch(self) -> int:
        """Queue the runs of events stored but never dispatched (a crash in between)."""
        pending: list[EventRow] = await self.store.run(self.rows.undispatched)
        if not pending:
            return 0
        await self.queue.enqueue([r for e in pending for r in self.runs_for(e.payload)])
        await self.store.run(self._mark, [e.event_id for e in pending])
        return len(pending)

    def _workflow(self, name: str) -> Workflow:
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise KeyError(f"no enabled workflow {name!r} (enabled: {known})") from None

    async def add_tick(self, workflow: str, tick: datetime) -> str | None:
        """Queue the run of one schedule tick; its id, or None if that tick already ran."""
        self._workflow(workflow)
        request = RunRequest(
            workflow, f"tick:{tick.isoformat()}", "schedule", {"tick": tick.isoformat()}
        )
        new = await self.queue.enqueue([request])
        return new[0] if new else None

    async def add_manual(
        self, workflow: str, params: Mapping[str, Any] | None = None, *, key: str | None = None
    ) -> str | None:
        """Queue a run asked for by hand; ``key`` makes repeated asks one run."""
        found = self._workflow(workflow)
        params = dict(params or {})
        if isinstance(found.trigger, ManualTrigger):
            missing = [p for p in found.trigger.required if p not in params]
            if missing:
                raise ValueError(f"{workflow} needs --param {', '.join(missing)}")
        request = RunRequest(
            workflow,
            f"manual:{key or secrets.token_hex(8)}",
            "manual",
            {"params": params},
            lead_id=params.get("lead_id"),
        )
        new = await self.queue.enqueue([request])
        return new[0] if new else None
