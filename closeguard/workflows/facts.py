"""Organization facts that rarely change, read once per process and kept until they change.

The key's user, the organization's active members, its users, lead and opportunity
statuses, pipelines and lead custom fields: every run of every workflow would otherwise
ask Close for them again, against a rate limit the whole organization shares.

``OrgFacts`` (one per process, the executor's) keeps each fact after its first read, made
through the asking run's own guarded client (so it is audited like any call). A fact is
dropped when

- an event the intake sees says it may have changed (``observe``, an inbox listener: any
  event on a custom field, status, pipeline, membership, user, group or the organization),
  or
- ``ttl`` seconds passed since it was read (default 10 minutes: a change Close sends no
  event for, or one missed while intake was down, is seen that late at worst).

A run is served a cached fact only when its own policy grants that read: a workflow never
learns through the cache what its guard would not have let it ask for (it asks, and is
denied and audited as ever). Reads a workflow makes to check its own earlier writes never
go through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from closeguard.tools.clock import Clock, SystemClock

if TYPE_CHECKING:
    from closeguard.tools import models as m
    from closeguard.tools.client import CloseClient

__all__ = ["CHANGING_TYPES", "DEFAULT_TTL", "OrgFacts", "RunFacts"]

T = TypeVar("T")

DEFAULT_TTL = 600.0
CHANGING_TYPES = frozenset(
    {
        "custom_field",
        "status",
        "lead_status",
        "opportunity_status",
        "pipeline",
        "membership",
        "user",
        "group",
        "role",
        "organization",
    }
)
"""Event object types (their first dotted part) after which the cached facts are dropped."""


@dataclass
class _Entry:
    value: Any
    read_at: float


class OrgFacts:
    """The process's cache of organization facts (see the module doc)."""

    def __init__(self, *, clock: Clock | None = None, ttl: float = DEFAULT_TTL) -> None:
        self.clock = clock or SystemClock()
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.reads = 0
        self.hits = 0
        self.invalidations = 0

    async def get(self, name: str, read: Callable[[], Awaitable[T]]) -> T:
        """The fact ``name``: cached, or ``read()`` once (concurrent askers wait for it)."""
        entry = self._fresh(name)
        if entry is not None:
            self.hits += 1
            return cast(T, entry.value)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self._fresh(name)
            if entry is not None:
                self.hits += 1
                return cast(T, entry.value)
            value = await read()
            self.reads += 1
            self._entries[name] = _Entry(value, self.clock.now())
            return value

    def _fresh(self, name: str) -> _Entry | None:
        entry = self._entries.get(name)
        if entry is None or self.clock.now() - entry.read_at >= self.ttl:
            return None
        return entry

    def invalidate(self) -> None:
        """Drop every fact (the next run reads them again)."""
        self._entries.clear()
        self.invalidations += 1

    def observe(self, event: Mapping[str, Any], source: str = "", new: bool = True) -> None:
        """An inbox listener: drop the facts when ``event`` may have changed one."""
        kind = str(event.get("object_type") or "").split(".", 1)[0]
        if new and kind in CHANGING_TYPES:
            self.invalidate()


class RunFacts:
    """One run's view of the facts: read through its client, served only as its policy
    allows (``allowed(endpoint_name)``)."""

    def __init__(
        self, facts: OrgFacts, client: CloseClient, allowed: Callable[[str], bool]
    ) -> None:
        self.facts = facts
        self.client = client
        self.allowed = allowed

    async def _get(self, name: str, endpoint: str, read: Callable[[], Awaitable[T]]) -> T:
        if not self.allowed(endpoint):
            return await read()  # the guard denies it and audits the attempt
        return await self.facts.get(name, read)

    async def me(self) -> m.User:
        """The API key's user."""
        return await self._get("me", "user.me", self.client.users.me)

    async def organization(self) -> m.Organization:
        """The key's organization (with its ``memberships``)."""
        me = await self.me()
        org_id = str(me.organizations[0]["id"])
        return await self._get(
            "organization", "organization.get", lambda: self.client.organization.get(org_id)
        )

    async def active_users(self) -> list[str]:
        """The ids of the organization's active members, sorted."""
        org = await self.organization()
        return sorted(str(member["user_id"]) for member in org.memberships)

    async def users(self) -> list[m.User]:
        async def read() -> list[m.User]:
            return [u async for u in self.client.users.iter()]

        return await self._get("users", "user.list", read)

    async def lead_statuses(self) -> list[m.LeadStatus]:
        return await self._get("lead_statuses", "status.lead.list", self.client.statuses.lead)

    async def opportunity_statuses(self) -> list[m.OpportunityStatus]:
        return await self._get(
            "opportunity_statuses", "status.opportunity.list", self.client.statuses.opportunity
        )

    async def pipelines(self) -> list[m.Pipeline]:
        return await self._get("pipelines", "pipeline.list", self.client.pipelines.list)

    async def lead_custom_fields(self) -> list[m.CustomField]:
        async def read() -> list[m.CustomField]:
            return [f async for f in self.client.custom_fields.lead.iter()]

        return await self._get("lead_custom_fields", "custom_field.lead.list", read)
