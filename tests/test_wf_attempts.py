"""A run's attempts bound a run stuck at one place, not a long run under a fault rate: an
attempt that journaled a new write before Close failed it is not counted, so a workflow
with many writes finishes under a steady fault rate, each write once; a run that fails at
the same place every time still goes dead."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.guardrails import Policy
from closeguard.simulator import BASE_URL, FakeClock, Simulator
from closeguard.store import Store
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import Backoff, SqlRunQueue
from closeguard.workflows.worker import Worker

WRITES = 8
POLICY = Policy.from_dict({"name": "many", "grants": {"task": "write", "lead": "read"}})


async def many_tasks(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    for i in range(WRITES):
        await ctx.effect(
            f"task-{i}",
            lambda i=i: ctx.client.tasks.create({"lead_id": lead_id, "text": f"step {i}"}),
        )


FLOW = Workflow("many", EventTrigger("lead", "created"), POLICY, (many_tasks,))


class EverySecondWriteFails(httpx.AsyncBaseTransport):
    """Close failing every other write with a 503 (after it, so nothing landed), or every
    write when ``always``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, always: bool = False) -> None:
        self.inner = inner
        self.always = always
        self.writes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.writes += 1
            if self.always or self.writes % 2 == 0:
                return httpx.Response(503, json={"error": "unavailable"}, request=request)
        return await self.inner.handle_async_request(request)


async def drain(tmp_path: Path, *, always: bool) -> tuple[Simulator, SqlRunQueue]:
    clock = FakeClock()
    sim = Simulator(seed=6, leads=1, clock=clock)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    queue = SqlRunQueue(store, clock=clock, backoff=Backoff(max_attempts=3, base=1, cap=4))
    inbox = Inbox(store, [FLOW], queue)
    lead_id = next(iter(sim.state["leads"]))
    event = {"id": "ev_1", "object_type": "lead", "action": "created", "lead_id": lead_id}
    await inbox.add({**event, "data": {"id": lead_id}}, source="webhook")
    executor = Executor(
        store=store,
        checkpointer=InMemorySaver(),
        api_key=sim.api_key,
        transport=EverySecondWriteFails(sim.transport(), always=always),
        base_url=BASE_URL,
        clock=clock,
    )
    worker = Worker(queue, executor, {"many": FLOW}, store=store, name="w")
    for _ in range(100):
        if not await worker.run_one():
            waiting = await queue.list(status="queued")
            if not waiting:
                break
            clock.advance_to(min(r.available_at for r in waiting) + 0.001)
    return sim, queue


async def test_a_long_run_under_a_steady_fault_rate_finishes_each_write_once(
    tmp_path: Path,
) -> None:
    sim, queue = await drain(tmp_path, always=False)
    [run] = await queue.list()
    assert run.status == "completed", run.error
    texts = Counter(t["text"] for t in sim.state["tasks"].values() if t["text"].startswith("step"))
    assert texts == {f"step {i}": 1 for i in range(WRITES)}


async def test_a_run_failing_at_the_same_place_still_goes_dead(tmp_path: Path) -> None:
    sim, queue = await drain(tmp_path, always=True)
    [run] = await queue.list()
    assert (run.status, run.attempts) == ("dead", 3)
    assert "503" in (run.error or "")
    assert not [t for t in sim.state["tasks"].values() if t["text"].startswith("step")]
