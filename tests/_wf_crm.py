"""A simulated CRM with people at work and the runtime's own parts (inbox, queue, workers)
for the tests of what real organizations do to runs: merges, deletes, workflows that meet
on one lead, the rotation.

``Crm.act`` does what a person does in Close (unguarded) and returns the events it caused;
``deliver`` hands events to the inbox as webhooks would; ``drain`` runs every claimable run
with the given workers (approving what the runs ask for, like a person at the console)
until nothing is left to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from closeguard.guardrails import Approvals
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.tools import CloseClient, FakeClock
from closeguard.workflows import Workflow, packaged_workflows
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import Backoff
from closeguard.workflows.queue_pg import queue_for
from closeguard.workflows.worker import Worker

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class Crm:
    """A simulator on a fake clock and the runtime's parts on ``store``."""

    def __init__(
        self, store: Store, *names: str, seed: int = 11, leads: int = 4, approve: bool = True
    ) -> None:
        self.store = store
        self.clock = FakeClock(NOW.timestamp())
        self.sim = Simulator(seed=seed, leads=leads, clock=self.clock)
        every = packaged_workflows()
        self.workflows: dict[str, Workflow] = {n: every[n] for n in names}
        self.queue = queue_for(store, clock=self.clock, backoff=Backoff(base=1.0, cap=4.0))
        self.inbox = Inbox(store, self.workflows.values(), self.queue)
        self.saver = InMemorySaver()
        self.approve = approve
        self.approvals = Approvals(store)

    def executor(self) -> Executor:
        """A process's executor (its own facts cache): a new one is a restart."""
        return Executor(
            store=self.store,
            checkpointer=self.saver,
            api_key=self.sim.api_key,
            transport=self.sim.transport(),
            base_url=BASE_URL,
            clock=self.clock,
        )

    def workers(self, count: int = 1) -> list[Worker]:
        executor = self.executor()
        return [
            Worker(
                self.queue,
                executor,
                self.workflows,
                store=self.store,
                name=f"w{i}",
                concurrency=1,
                poll=0.01,
            )
            for i in range(count)
        ]

    def client(self) -> CloseClient:
        return self.sim.client()

    async def act(self, action: Callable[[CloseClient], Awaitable[Any]]) -> list[dict[str, Any]]:
        """Do ``action`` as a person would, return the events it caused."""
        seen = len(self.sim.events)
        async with self.client() as close:
            await action(close)
        return [dict(e) for e in self.sim.events[seen:]]

    async def deliver(self, events: Sequence[dict[str, Any]]) -> int:
        return await self.inbox.add_many(events, source="webhook")

    async def drain(self, workers: Iterable[Worker] | None = None, *, rounds: int = 50) -> None:
        """Run every claimable run with ``workers`` (concurrently when several), approve
        what runs wait for, advance the clock past backoffs, until nothing moves."""
        crew = list(workers or self.workers())
        for _ in range(rounds):
            moved = await asyncio.gather(*(_all(w) for w in crew))
            approved = 0
            if self.approve:
                for pending in await self.store.run(self.approvals.list, "pending"):
                    await self.store.run(self.approvals.approve, pending.id, by="person")
                    approved += 1
            resumed = await crew[0].check_approvals()
            if not any(moved) and not approved and not resumed:
                queued = await self.queue.list(status="queued", limit=1)
                if not queued:
                    return
                self.clock.advance(5)
        raise AssertionError("runs kept moving")

    def tasks(self, lead_id: str, *, open_only: bool = True) -> list[dict[str, Any]]:
        return [
            t
            for t in self.sim.state["tasks"].values()
            if t["lead_id"] == lead_id and not (open_only and t["is_complete"])
        ]

    async def runs(self, **filters: Any) -> list[Any]:
        return await self.queue.list(limit=1000, **filters)


async def _all(worker: Worker) -> int:
    done = 0
    while await worker.run_one():
        done += 1
    return done


def of(events: Sequence[dict[str, Any]], object_type: str, action: str) -> dict[str, Any]:
    return next(e for e in events if e["object_type"] == object_type and e["action"] == action)
