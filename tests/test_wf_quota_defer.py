"""A run whose policy's per-window limit ran out waits for the next window instead of
failing: a burst bigger than the limit is worked through, at the limit's pace, with
nothing lost and nothing written twice. A per-run limit still fails the run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.guardrails import AuditLog, Guarded, Policy
from closeguard.simulator import BASE_URL, FakeClock, Simulator
from closeguard.store import Store
from closeguard.tools.errors import QuotaExhausted
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import SqlRunQueue
from closeguard.workflows.worker import Worker

HOUR = 3600.0


async def welcome(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    await ctx.effect(
        "task", lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": "Welcome call"})
    )


def flow(limits: dict[str, object]) -> Workflow:
    policy = Policy.from_dict(
        {"name": "welcomer", "grants": {"task": "write", "lead": "read"}, "limits": limits}
    )
    return Workflow("welcomer", EventTrigger("lead", "created"), policy, (welcome,))


async def setup(
    tmp_path: Path, workflow: Workflow, leads: int
) -> tuple[Simulator, SqlRunQueue, Worker, FakeClock]:
    clock = FakeClock()
    sim = Simulator(seed=5, leads=leads, clock=clock)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    queue = SqlRunQueue(store, clock=clock)
    inbox = Inbox(store, [workflow], queue)
    for i, lead_id in enumerate(sim.state["leads"]):
        event = {"id": f"ev_{i}", "object_type": "lead", "action": "created", "lead_id": lead_id}
        await inbox.add({**event, "data": {"id": lead_id}}, source="webhook")
    executor = Executor(
        store=store,
        checkpointer=InMemorySaver(),
        api_key=sim.api_key,
        transport=sim.transport(),
        base_url=BASE_URL,
        clock=clock,
    )
    worker = Worker(queue, executor, {workflow.name: workflow}, store=store, name="w")
    return sim, queue, worker, clock


def welcome_tasks(sim: Simulator) -> Counter[str]:
    return Counter(t["lead_id"] for t in sim.state["tasks"].values() if t["text"] == "Welcome call")


async def test_a_burst_over_the_hourly_limit_waits_for_the_next_window(tmp_path: Path) -> None:
    sim, queue, worker, clock = await setup(tmp_path, flow({"per_window": {"writes": 3}}), 7)
    started = clock.now()
    while await worker.run_one():
        pass
    runs = await queue.list(limit=20)
    states = Counter(r.status for r in runs)
    assert states == {"completed": 3, "queued": 4}
    assert sum(welcome_tasks(sim).values()) == 3
    waiting = [r for r in runs if r.status == "queued"]
    window_end = (started // HOUR + 1) * HOUR
    assert {r.available_at for r in waiting} == {window_end}
    assert all(r.attempts == 0 for r in waiting), "waiting is not a failed attempt"
    assert all("limits.per_window.writes" in (r.error or "") for r in waiting)
    assert all("until " in (r.error or "") for r in waiting)

    windows = 0
    while waiting := await queue.list(status="queued"):
        clock.advance_to(min(r.available_at for r in waiting) + 1)
        windows += 1
        while await worker.run_one():
            pass
    assert windows == 2, "4 waiting runs at 3 writes an hour take two more windows"
    assert Counter(r.status for r in await queue.list(limit=20)) == {"completed": 7}
    assert welcome_tasks(sim) == dict.fromkeys(sim.state["leads"], 1)


async def test_a_per_run_limit_still_fails_the_run(tmp_path: Path) -> None:
    async def twice(ctx: Context) -> None:
        lead_id = ctx.event_data["id"]
        for key in ("a", "b"):
            await ctx.effect(
                key, lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": "Welcome call"})
            )

    base = flow({"per_run": {"writes": 1}})
    workflow = Workflow(base.name, base.trigger, base.policy, (twice,))
    _, queue, worker, _ = await setup(tmp_path, workflow, 1)
    assert await worker.run_one()
    [run] = await queue.list()
    assert run.status == "failed"
    assert "limits.per_run.writes" in (run.error or "")


async def test_the_guard_says_when_the_window_ends(tmp_path: Path) -> None:
    clock = FakeClock(start=10 * HOUR + 600)
    sim = Simulator(seed=5, leads=1, clock=clock)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    policy = flow({"per_window": {"writes": 1}}).policy
    lead_id = next(iter(sim.state["leads"]))
    async with sim.client(policy=Guarded(policy, store=store, clock=clock)) as client:
        await client.tasks.create({"lead_id": lead_id, "text": "one"})
        with pytest.raises(QuotaExhausted) as caught:
            await client.tasks.create({"lead_id": lead_id, "text": "two"})
    assert caught.value.retry_at == 11 * HOUR
    assert caught.value.rule == "limits.per_window.writes"
    assert str(caught.value).endswith("until 1970-01-01T11:00:00Z")
    assert [r["decision"] for r in AuditLog(store).rows()][-1] == "deny"
