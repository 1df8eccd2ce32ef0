"""What the console tests share: a simulated org whose duplicate-lead-merge runs wait for a
person, on a real store, queue, inbox and worker (as ``closeguard run`` has them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from closeguard.agent.runtime import open_checkpointer
from closeguard.console import ConsoleConfig, Reader
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.store.runs import RunRow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.library.duplicate_lead_merge import WORKFLOW
from closeguard.workflows.queue import SqlRunQueue
from closeguard.workflows.worker import Worker

TOKEN = "console-token-for-tests-0123456789"


class MergeOrg:
    """A simulator, a store and a checkpoint file; runs go through inbox, queue, worker."""

    def __init__(self, tmp_path: Path, seed: int = 7) -> None:
        self.sim = Simulator(seed=seed, leads=12)
        self.store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        self.checkpoints = tmp_path / "checkpoints.db"
        self.queue = SqlRunQueue(self.store)
        self._emails = iter(self._contact_emails())

    def _contact_emails(self) -> list[str]:
        out = []
        for lead in sorted(self.sim.state["leads"].values(), key=lambda x: x["date_created"]):
            for contact in self.sim.state["contacts"].values():
                if contact["lead_id"] == lead["id"] and contact.get("emails"):
                    out.append(contact["emails"][0]["email"])
                    break
        return out

    def config(self, **kwargs: Any) -> ConsoleConfig:
        reader = Reader(
            self.store, api_key=self.sim.api_key, base_url=BASE_URL, transport=self.sim.transport()
        )
        return ConsoleConfig(
            store=self.store,
            token=TOKEN,
            reader=reader,
            workflows={WORKFLOW.name: WORKFLOW},
            **kwargs,
        )

    async def duplicate(self) -> dict[str, Any]:
        """Create a lead sharing an older lead's contact email; returns its created event."""
        email = next(self._emails)
        seen = len(self.sim.events)
        async with self.sim.client() as close:
            await close.leads.create(
                {"name": "Dup Co", "contacts": [{"name": "Dup", "emails": [{"email": email}]}]}
            )
        return next(
            dict(e)
            for e in self.sim.events[seen:]
            if e["object_type"] == "lead" and e["action"] == "created"
        )

    async def step(self, event: dict[str, Any] | None = None) -> list[RunRow]:
        """Add ``event``, move decided approvals and execute what is claimable; the runs."""
        async with open_checkpointer(self.checkpoints) as saver:
            inbox = Inbox(self.store, [WORKFLOW], self.queue)
            executor = Executor(
                store=self.store,
                checkpointer=saver,
                api_key=self.sim.api_key,
                transport=self.sim.transport(),
                base_url=BASE_URL,
            )
            worker = Worker(self.queue, executor, {WORKFLOW.name: WORKFLOW}, store=self.store)
            if event is not None:
                await inbox.add(event, source="webhook")
            await worker.check_approvals()
            while await worker.run_one():
                pass
        return await self.queue.list()

    async def waiting(self) -> RunRow:
        """A new duplicate whose merge run now waits for an approval."""
        runs = await self.step(await self.duplicate())
        newest = max(runs, key=lambda r: r.seq)
        assert newest.status == "waiting_approval" and newest.approval_id, newest
        return newest
