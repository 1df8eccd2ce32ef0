"""The embedded demo of ``closeguard run`` without a Close key: a simulated organization,
subscribed to the runtime's receiver, with a little sales activity so workflows fire.

The demo acts as the sales team would in Close, through an unguarded simulator client:
new leads (one of them a duplicate of an existing contact), opportunities moving through
their statuses (won and lost ones too), and a logged call with a note. Scheduled
workflows get one tick at the start, and an approval the runtime asks for is granted a
few seconds later, as a person would with ``closeguard approvals approve ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from closeguard.guardrails import Approvals
from closeguard.simulator import Simulator
from closeguard.tools import CloseClient, CloseguardError
from closeguard.workflows.activity import Activity
from closeguard.workflows.definition import ScheduleTrigger
from closeguard.workflows.runtime import Runtime

__all__ = ["DemoDriver"]

log = logging.getLogger("closeguard.cli.demo")

COMPANIES = ("Northwind Labs", "Globex Retail", "Initech Cloud", "Umbrella Health", "Hooli Ads")
PEOPLE = ("Avery Stone", "Riley Park", "Morgan Lee", "Casey Diaz", "Jamie Fox")
CALL_NOTES = (
    "Talked pricing for 40 seats; they need SSO. Send the security overview by Friday.",
    "Champion is moving teams; asked for an intro to the new VP before the renewal.",
)


class DemoDriver:
    """Drives activity in ``sim`` every ``every`` seconds while ``runtime`` runs."""

    def __init__(
        self,
        sim: Simulator,
        runtime: Runtime,
        *,
        every: float = 1.5,
        approve_after: float | None = 3.0,
        seed: int = 7,
    ) -> None:
        self.sim = sim
        self.runtime = runtime
        self.every = every
        self.approve_after = approve_after
        self.random = random.Random(seed)
        self.count = itertools.count(1)
        self._approving: set[str] = set()

    def say(self, text: str) -> None:
        self.runtime.feed.emit(Activity("note", f"demo: {text}"))

    async def run(self, stop: asyncio.Event) -> None:
        """Act until ``stop`` is set."""
        self.runtime.feed.listeners.append(self._on_activity)
        await self._fire_schedules()
        actions: list[Callable[[CloseClient], Awaitable[str]]] = [
            self.new_lead,
            self.move_opportunity,
            self.log_call,
            self.win_opportunity,
            self.duplicate_lead,
            self.lose_opportunity,
        ]
        async with self.sim.client() as client:
            for action in itertools.cycle(actions):
                if stop.is_set():
                    return
                try:
                    self.say(await action(client))
                except CloseguardError as exc:
                    self.say(f"{action.__name__} failed: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every)

    async def _fire_schedules(self) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        for workflow in self.runtime.workflows.values():
            if isinstance(workflow.trigger, ScheduleTrigger):
                self.say(f"ticking the {workflow.name} schedule once now")
                await self.runtime.schedules.tick(workflow.name, now)

    def _on_activity(self, activity: Activity) -> None:
        if activity.status == "waiting_approval" and activity.run_id not in self._approving:
            self._approving.add(str(activity.run_id))
            asyncio.get_running_loop().create_task(self._approve(str(activity.run_id)))

    async def _approve(self, run_id: str) -> None:
        """Grant the approval a parked run waits for, a few seconds later, as a person would."""
        run = await self.runtime.queue.get(run_id)
        if run is None or run.approval_id is None:
            return
        if self.approve_after is None:
            self.say(f"{run.approval_id} waits for a person: approve or reject it in the console")
            return
        self.say(
            f"{run.approval_id} waits for a person (closeguard approvals approve "
            f"{run.approval_id} --as NAME); approving it in {self.approve_after:g}s"
        )
        await asyncio.sleep(self.approve_after)
        approvals = Approvals(self.runtime.store)
        await self.runtime.store.run(
            approvals.approve, run.approval_id, by="demo", via="program", channel="demo"
        )

    def _opportunities(self, status_type: str) -> list[dict[str, Any]]:
        return [
            o for o in self.sim.state["opportunities"].values() if o["status_type"] == status_type
        ]

    def _status(self, status_type: str, not_id: str | None = None) -> dict[str, Any]:
        found = [
            s
            for s in self.sim.state["opportunity_statuses"].values()
            if s["type"] == status_type and s["id"] != not_id
        ]
        return self.random.choice(found)

    async def new_lead(self, client: CloseClient) -> str:
        n = next(self.count)
        name = f"{self.random.choice(COMPANIES)} {n}"
        person = self.random.choice(PEOPLE)
        email = f"{person.split()[0].lower()}.{n}@{name.split()[0].lower()}.example"
        lead = await client.post(
            "/lead/",
            json={"name": name, "contacts": [{"name": person, "emails": [{"email": email}]}]},
        )
        return f"created lead {lead['display_name']}"

    async def duplicate_lead(self, client: CloseClient) -> str:
        contact = self.random.choice(
            [c for c in self.sim.state["contacts"].values() if c.get("emails")]
        )
        email = contact["emails"][0]["email"]
        lead = await client.post(
            "/lead/",
            json={
                "name": f"{contact['name']} (web form)",
                "contacts": [{"name": contact["name"], "emails": [{"email": email}]}],
            },
        )
        return f"created lead {lead['display_name']} with an existing contact's email"

    async def _move(self, client: CloseClient, status_type: str) -> str:
        opportunities = self._opportunities("active")
        if not opportunities:
            return "no active opportunity left to move"
        opp = self.random.choice(opportunities)
        status = self._status(status_type, not_id=opp["status_id"])
        await client.put(f"/opportunity/{opp['id']}/", json={"status_id": status["id"]})
        return f"moved opportunity on {opp['lead_name']} to {status['label']}"

    async def move_opportunity(self, client: CloseClient) -> str:
        return await self._move(client, "active")

    async def win_opportunity(self, client: CloseClient) -> str:
        return await self._move(client, "won")

    async def lose_opportunity(self, client: CloseClient) -> str:
        return await self._move(client, "lost")

    async def log_call(self, client: CloseClient) -> str:
        lead = self.random.choice(list(self.sim.state["leads"].values()))
        note = self.random.choice(CALL_NOTES)
        await client.post(
            "/activity/call/",
            json={"lead_id": lead["id"], "direction": "outbound", "duration": 420, "note": note},
        )
        return f"logged a call with a note on {lead['display_name']}"
