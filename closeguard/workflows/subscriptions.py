"""The Close webhook subscription for the enabled workflows: created, kept current, revived.

``Subscriptions.sync()`` (``closeguard webhooks sync --url URL``) makes Close's subscription
deliver exactly the ``(object_type, action)`` pairs the enabled workflows' ``EventTrigger``s
need, to ``url``:

- no subscription stored yet (or Close no longer has it): ``POST /webhook/``, and the new
  id, URL, events and ``signature_key`` go to the store (``store.cursors``);
- one stored: ``GET /webhook/{id}/``, then ``PUT`` only what differs (URL, events, a
  status that is not ``active``); identical: nothing is sent, so a second run changes
  nothing.

The signature key is only ever in the create response and the store; it is never printed,
logged or returned.

``ensure_active()``, which the runtime calls periodically, handles what Close does to a
subscription whose deliveries keep failing: it pauses it (``status: "paused"``), and a paused
subscription gets nothing, not even later, until its owner sets it back. When it finds the
subscription paused it sets it back to ``active`` and then calls ``on_reactivated`` (the
runtime's Event Log catch-up), which recovers what was missed; reactivating first means
nothing falls between the catch-up and the first new delivery. A subscription deleted in
Close is created again the same way.

Calls go through the given ``CloseClient``, guarded in the runtime by the ``event-intake``
policy (webhook subscriptions are destructive in the catalog; that policy grants them but
denies deleting one).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from closeguard.store.cursors import Cursors, StoredSubscription
from closeguard.tools import CloseClient, NotFound, UsageError
from closeguard.workflows.definition import EventTrigger, Workflow

__all__ = [
    "FATE_PAIRS",
    "EventPair",
    "Subscriptions",
    "SyncResult",
    "event_pairs",
    "intake_pairs",
    "wants",
]

log = logging.getLogger("closeguard.workflows.subscriptions")

EventPair = tuple[str, str]
SyncAction = Literal["created", "updated", "unchanged", "recreated"]


def event_pairs(workflows: Iterable[Workflow]) -> tuple[EventPair, ...]:
    """The sorted, distinct ``(object_type, action)`` pairs the workflows' triggers need."""
    pairs = {
        (w.trigger.object_type, action)
        for w in workflows
        if isinstance(w.trigger, EventTrigger)
        for action in w.trigger.actions
    }
    return tuple(sorted(pairs))


FATE_PAIRS: tuple[EventPair, ...] = (
    ("lead", "deleted"),
    ("lead", "merged"),
    ("opportunity", "deleted"),
    ("task", "deleted"),
)
"""Events that tell the runtime what became of the objects runs are about: merges (their
``meta`` names source and destination) and deletions (``store.fates``)."""


def intake_pairs(workflows: Iterable[Workflow]) -> tuple[EventPair, ...]:
    """What intake asks Close for: the triggers' pairs and, when any workflow runs on
    events, ``FATE_PAIRS`` (so runs follow merges and skip what was deleted)."""
    pairs = event_pairs(workflows)
    return tuple(sorted({*pairs, *FATE_PAIRS})) if pairs else ()


def wants(pairs: Iterable[EventPair]) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate: is this event one of ``pairs`` (what catch-up should store)."""
    wanted = frozenset(pairs)
    return lambda event: (event.get("object_type"), event.get("action")) in wanted


@dataclass(frozen=True)
class SyncResult:
    """What ``sync`` did to which subscription (never the key)."""

    subscription_id: str
    action: SyncAction
    url: str
    events: tuple[EventPair, ...]


def _remote_pairs(hook: Mapping[str, Any]) -> set[tuple[Any, Any]] | None:
    """The subscription's pairs, or None if any entry carries an ``extra_filter``."""
    entries = hook.get("events") or []
    if any(isinstance(e, Mapping) and e.get("extra_filter") for e in entries):
        return None
    return {(e.get("object_type"), e.get("action")) for e in entries if isinstance(e, Mapping)}


class Subscriptions:
    """Keeps one Close subscription delivering ``events`` to ``url`` (see the module doc)."""

    def __init__(
        self,
        client: CloseClient,
        cursors: Cursors,
        *,
        url: str,
        events: Sequence[EventPair],
        on_reactivated: Callable[[], Awaitable[Any] | Any] | None = None,
    ) -> None:
        self.client = client
        self.cursors = cursors
        self.url = url
        self.events = tuple(sorted(set(events)))
        self.on_reactivated = on_reactivated
        self.reactivations = 0

    @property
    def body(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "events": [{"object_type": o, "action": a} for o, a in self.events],
        }

    async def stored(self) -> StoredSubscription | None:
        """The subscription this installation manages (the newest stored)."""
        subs = await self.cursors.asubscriptions()
        return subs[-1] if subs else None

    async def sync(self) -> SyncResult:
        """Create or update the subscription; idempotent (see the module doc)."""
        if not self.events:
            raise UsageError(
                "no enabled workflow is triggered by a Close event: nothing to subscribe to"
            )
        current = await self.stored()
        if current is None:
            return await self._create("created")
        try:
            hook = await self.client.get(f"/webhook/{current.id}/")
        except NotFound:
            log.warning("subscription %s no longer exists in Close; creating it again", current.id)
            await self.cursors.aforget_subscription(current.id)
            return await self._create("recreated")
        changes: dict[str, Any] = {}
        if hook.get("url") != self.url:
            changes["url"] = self.url
        if _remote_pairs(hook) != set(self.events):
            changes["events"] = self.body["events"]
        if hook.get("status", "active") != "active":
            changes["status"] = "active"
        if changes:
            await self.client.put(f"/webhook/{current.id}/", json=changes)
        if changes or current.url != self.url or current.events != self.events:
            updated = StoredSubscription(current.id, self.url, self.events, current.signature_key)
            await self.cursors.asave_subscription(updated)
        return SyncResult(current.id, "updated" if changes else "unchanged", self.url, self.events)

    async def _create(self, action: SyncAction) -> SyncResult:
        hook = await self.client.post("/webhook/", json=self.body)
        stored = StoredSubscription(hook["id"], self.url, self.events, hook["signature_key"])
        await self.cursors.asave_subscription(stored)
        return SyncResult(stored.id, action, self.url, self.events)

    async def ensure_active(self) -> bool:
        """Set a paused (or deleted) subscription going again, then catch up; True if so.

        Nothing is sent but one ``GET`` while the subscription is active, and nothing at all
        when none is stored yet (``sync`` has not run).
        """
        current = await self.stored()
        if current is None:
            return False
        try:
            hook = await self.client.get(f"/webhook/{current.id}/")
        except NotFound:
            await self.sync()
        else:
            status = hook.get("status", "active")
            if status == "active":
                return False
            log.warning("subscription %s was %s in Close; setting it active", current.id, status)
            await self.client.put(f"/webhook/{current.id}/", json={"status": "active"})
        self.reactivations += 1
        if self.on_reactivated is not None:
            outcome = self.on_reactivated()
            if inspect.isawaitable(outcome):
                await outcome
        return True
