"""The executor end to end against the simulator: guarded, audited, journaled runs that
stop for approvals and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from closeguard.guardrails import Approvals, AuditLog, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.workflows.definition import Context, EventTrigger, ManualTrigger, Workflow
from closeguard.workflows.testing import resume_workflow, run_workflow

TASK_POLICY = Policy.from_dict(
    {
        "name": "test-task-writer",
        "grants": {"task": "write", "lead": "read"},
        "constraints": {"task.create": {"lead_id": {"scope": "triggered"}}},
    }
)
MERGE_POLICY = Policy.from_dict(
    {
        "name": "test-merger",
        "grants": {"lead": "destructive", "task": "write"},
        "approve": ["lead.merge"],
    }
)


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=3, leads=6)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def lead_event(sim: Simulator, index: int = 0) -> dict[str, Any]:
    lead_id = list(sim.state["leads"])[index]
    return {
        "id": f"ev_{index}",
        "object_type": "lead",
        "action": "created",
        "object_id": lead_id,
        "lead_id": lead_id,
        "data": {"id": lead_id},
    }


async def create_task(ctx: Context) -> None:
    task = await ctx.effect(
        "task",
        lambda: ctx.client.tasks.create({"lead_id": ctx.event_data["id"], "text": "Call them"}),
    )
    ctx.state["task_id"] = task["id"]


TASKER = Workflow(
    name="tasker",
    trigger=EventTrigger("lead", "created"),
    policy=TASK_POLICY,
    steps=(create_task,),
)


def new_tasks(sim: Simulator, before: set[str]) -> list[Any]:
    return [t for t in sim.state["tasks"].values() if t["id"] not in before]


async def test_a_run_writes_through_the_guard_audited_as_the_workflow(
    sim: Simulator, store: Store
) -> None:
    event = lead_event(sim)
    before = set(sim.state["tasks"])
    result = await run_workflow(
        TASKER, transport=sim.transport(), api_key=sim.api_key, event=event, store=store
    )
    assert result.status == "completed", result.error
    created = new_tasks(sim, before)
    assert [(t["id"], t["lead_id"]) for t in created] == [
        (result.state["task_id"], event["lead_id"])
    ]
    rows = [r for r in AuditLog(store).tail(10) if r["run_id"] == result.run_id]
    assert rows and {r["actor"] for r in rows} == {"tasker"}
    assert {r["endpoint"] for r in rows} == {"task.create"}


async def test_the_same_run_retried_does_not_write_twice(sim: Simulator, store: Store) -> None:
    event = lead_event(sim)
    before = set(sim.state["tasks"])
    kwargs: dict[str, Any] = {"transport": sim.transport(), "api_key": sim.api_key}
    first = await run_workflow(TASKER, event=event, store=store, run_id="run_same", **kwargs)
    again = await run_workflow(TASKER, event=event, store=store, run_id="run_same", **kwargs)
    assert first.status == again.status == "completed"
    assert len(new_tasks(sim, before)) == 1


async def test_a_denied_call_fails_the_run_naming_the_rule(sim: Simulator, store: Store) -> None:
    other_lead = list(sim.state["leads"])[1]

    async def write_elsewhere(ctx: Context) -> None:
        await ctx.client.tasks.create({"lead_id": other_lead, "text": "not mine"})

    wf = Workflow("stray", EventTrigger("lead", "created"), TASK_POLICY, (write_elsewhere,))
    before = sim.snapshot()
    result = await run_workflow(
        wf, transport=sim.transport(), api_key=sim.api_key, event=lead_event(sim), store=store
    )
    assert result.status == "failed"
    assert result.error is not None and "PolicyViolation" in result.error
    assert "task.create" in result.error and "lead_id" in result.error
    assert not sim.diff(before)
    denied = [r for r in AuditLog(store).tail(10) if r["run_id"] == result.run_id]
    assert [r["decision"] for r in denied] == ["deny"]


async def merge_step(ctx: Context) -> None:
    await ctx.effect(
        "marker",
        lambda: ctx.client.tasks.create({"lead_id": ctx.params["into"], "text": "merging"}),
    )
    await ctx.client.leads.merge(ctx.params["source"], ctx.params["into"])
    ctx.state["merged"] = True


MERGER = Workflow("merger", ManualTrigger(("source", "into")), MERGE_POLICY, (merge_step,))


@pytest.mark.parametrize("decision", ["approve", "reject"])
async def test_an_approval_gated_merge_waits_then_resumes(
    sim: Simulator, store: Store, decision: str
) -> None:
    source, into = list(sim.state["leads"])[:2]
    params = {"source": source, "into": into}
    kwargs: dict[str, Any] = {"transport": sim.transport(), "api_key": sim.api_key}
    before = set(sim.state["tasks"])
    waiting = await run_workflow(MERGER, params=params, store=store, **kwargs)
    assert waiting.status == "waiting_approval" and waiting.approval_id
    assert source in sim.state["leads"]
    getattr(Approvals(store), decision)(waiting.approval_id, by="test")
    done = await resume_workflow(MERGER, waiting, params=params, store=store, **kwargs)
    if decision == "approve":
        assert done.status == "completed", done.error
        assert done.state == {"merged": True}
        assert source not in sim.state["leads"]
    else:
        assert done.status == "rejected"
        assert source in sim.state["leads"]
    assert [t["text"] for t in new_tasks(sim, before)] == ["merging"]


async def two_merges(ctx: Context) -> None:
    into = ctx.params["into"]
    for source in ctx.params["sources"]:
        await ctx.effect(f"merge-{source}", lambda s=source: ctx.client.leads.merge(s, into))
    ctx.state["merged"] = list(ctx.params["sources"])


async def test_a_step_with_two_gated_calls_asks_for_each_in_turn(
    sim: Simulator, store: Store
) -> None:
    first, second, into = list(sim.state["leads"])[:3]
    workflow = Workflow("merge-two", ManualTrigger(), MERGE_POLICY, (two_merges,))
    params = {"sources": [first, second], "into": into}
    kwargs: dict[str, Any] = {"transport": sim.transport(), "api_key": sim.api_key}
    waiting = await run_workflow(workflow, params=params, store=store, **kwargs)
    assert waiting.status == "waiting_approval"
    Approvals(store).approve(waiting.approval_id, by="t")  # type: ignore[arg-type]
    again = await resume_workflow(workflow, waiting, params=params, store=store, **kwargs)
    assert again.status == "waiting_approval" and again.approval_id != waiting.approval_id
    assert first not in sim.state["leads"] and second in sim.state["leads"]
    Approvals(store).approve(again.approval_id, by="t")  # type: ignore[arg-type]
    done = await resume_workflow(workflow, again, params=params, store=store, **kwargs)
    assert done.status == "completed", done.error
    assert second not in sim.state["leads"] and into in sim.state["leads"]
    assert [a.status for a in Approvals(store).list(limit=10)] == ["consumed", "consumed"]
