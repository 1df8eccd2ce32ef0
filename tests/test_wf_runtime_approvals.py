"""An approval-gated run through the queue and workers: it waits, survives a restart (a new
runtime on the same store and checkpoint file), completes once approved, and ends rejected
with nothing written when rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from closeguard.agent.runtime import open_checkpointer
from closeguard.guardrails import Approvals, AuditLog, Policy
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.store.effects import EffectRows
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import SqlRunQueue
from closeguard.workflows.worker import Worker

POLICY = Policy.from_dict(
    {
        "name": "merger",
        "grants": {"lead": "destructive", "task": "write"},
        "approve": ["lead.merge"],
    }
)


async def note_then_merge(ctx: Context) -> None:
    data = ctx.event_data
    await ctx.effect(
        "heads-up",
        lambda: ctx.client.tasks.create({"lead_id": data["into"], "text": "merging a duplicate"}),
    )
    await ctx.client.leads.merge(data["id"], data["into"])
    ctx.state["merged"] = data["id"]


MERGER = Workflow("merger", EventTrigger("lead", "created"), POLICY, (note_then_merge,))


class Life:
    """One process's worth of runtime objects on a shared store and checkpoint file."""

    def __init__(self, sim: Simulator, store: Store, saver: Any) -> None:
        self.queue = SqlRunQueue(store)
        self.inbox = Inbox(store, [MERGER], self.queue)
        executor = Executor(
            store=store,
            checkpointer=saver,
            api_key=sim.api_key,
            transport=sim.transport(),
            base_url=BASE_URL,
        )
        self.worker = Worker(self.queue, executor, {"merger": MERGER}, store=store)


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_a_gated_merge_waits_survives_a_restart_and_follows_the_decision(
    tmp_path: Path, decision: str
) -> None:
    sim = Simulator(seed=9, leads=4)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    checkpoints = tmp_path / "checkpoints.db"
    source, into = list(sim.state["leads"])[:2]
    event = {"id": "ev_dup", "object_type": "lead", "action": "created", "lead_id": source}
    event["data"] = {"id": source, "into": into}
    tasks_before = set(sim.state["tasks"])

    async with open_checkpointer(checkpoints) as saver:
        first = Life(sim, store, saver)
        await first.inbox.add(event, source="webhook")
        assert await first.worker.run_one()
        [run] = await first.queue.list()
        assert run.status == "waiting_approval" and run.approval_id
        assert await first.worker.check_approvals() == 0, "still pending"
        assert not await first.worker.run_one(), "a parked run is not claimed"

    getattr(Approvals(store), decision)(run.approval_id, by="tester")
    async with open_checkpointer(checkpoints) as saver:
        second = Life(sim, store, saver)
        assert await second.worker.check_approvals() == 1
        if decision == "approve":
            assert await second.worker.run_one()
        done = await second.queue.get(run.id)
    assert done is not None
    new_tasks = [t for t in sim.state["tasks"] if t not in tasks_before]
    assert len(new_tasks) == 1, "the write before the approval is never repeated"
    journal = EffectRows(store).get(run.id, "heads-up")
    assert journal is not None and journal.status == "done"
    merges = [
        r
        for r in AuditLog(store).rows()
        if r["endpoint"] == "lead.merge" and r["method"] != "DECIDE"
    ]
    if decision == "approve":
        assert done.status == "completed" and done.state == {"merged": source}
        assert source not in sim.state["leads"]
        assert [r["decision"] for r in merges] == ["approval_required", "approved"]
        assert Approvals(store).get(run.approval_id).status == "consumed"  # type: ignore[union-attr]
    else:
        assert done.status == "rejected" and "rejected" in (done.error or "")
        assert source in sim.state["leads"]
        assert [r["decision"] for r in merges] == ["approval_required"]
