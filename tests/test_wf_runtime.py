"""The runtime end to end against the simulator: webhook -> receiver -> inbox -> queue ->
worker -> guarded write, with order per lead, retries, dead letters and approvals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.guardrails import Approvals, AuditLog, Policy
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.simulator.faults import FaultConfig, WebhookFaults
from closeguard.store import Store
from closeguard.tools.clock import FakeClock
from closeguard.workflows.activity import Activity
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import Backoff, SqlRunQueue
from closeguard.workflows.runtime import Runtime, RuntimeConfig
from closeguard.workflows.worker import Worker

POLICY = Policy.from_dict(
    {
        "name": "test-runtime",
        "grants": {"task": "write", "lead": "destructive"},
        "approve": ["lead.merge"],
        "constraints": {"task.create": {"lead_id": {"scope": "triggered"}}},
    }
)


async def until(check: Callable[[], bool], within: float = 20.0) -> None:
    """Poll ``check`` (bounded) while the event loop works."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def task_on_lead(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    await ctx.effect(
        "task",
        lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": f"Welcome {lead_id}"}),
    )


TASKER = Workflow("welcome", EventTrigger("lead", "created"), POLICY, (task_on_lead,))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def welcome_tasks(sim: Simulator) -> list[Any]:
    return [t for t in sim.state["tasks"].values() if str(t["text"]).startswith("Welcome")]


@pytest.fixture
async def running(
    store: Store,
) -> AsyncIterator[Callable[..., Awaitable[tuple[Runtime, Simulator]]]]:
    """Start a runtime on a fresh simulator (receiver on a free port, subscribed)."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    sims: list[Simulator] = []

    async def start(
        *workflows: Workflow, faults: FaultConfig | None = None, **config: Any
    ) -> tuple[Runtime, Simulator]:
        sim = Simulator(seed=5, leads=4, faults=faults)
        sims.append(sim)
        runtime = Runtime(
            workflows,
            store=store,
            checkpointer=InMemorySaver(),
            api_key=sim.api_key,
            transport=sim.transport(),
            base_url=BASE_URL,
            config=RuntimeConfig(
                **{"listen": ("127.0.0.1", 0), "subscribe": True, "poll": 0.05, **config}
            ),
        )
        tasks.append(asyncio.create_task(runtime.run(stop)))
        await asyncio.wait_for(runtime.ready.wait(), 20)
        sim.webhooks.start()
        return runtime, sim

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for sim in sims:
        await sim.webhooks.stop()


async def test_a_webhook_runs_the_workflow_once_through_the_guard(
    running: Any, store: Store
) -> None:
    runtime, sim = await running(TASKER)
    seen: list[Activity] = []
    runtime.feed.listeners.append(seen.append)
    async with sim.client() as client:
        lead = await client.leads.create({"name": "Acme"})
    await until(lambda: len(welcome_tasks(sim)) == 1)
    await until(lambda: any(a.kind == "run" and a.status == "completed" for a in seen))
    [run] = await runtime.queue.list(status="completed")
    assert (run.workflow, run.lead_id) == ("welcome", lead.id)
    audit = [r for r in AuditLog(store).tail(50) if r["run_id"] == run.id]
    assert [(r["actor"], r["endpoint"]) for r in audit] == [("welcome", "task.create")]
    kinds = {a.kind for a in seen}
    assert {"event", "run", "action"} <= kinds


async def test_duplicated_and_replayed_deliveries_have_one_effect(running: Any) -> None:
    runtime, sim = await running(TASKER)
    async with sim.client() as client:
        await client.leads.create({"name": "Dup Inc"})
    await until(lambda: len(welcome_tasks(sim)) == 1)
    [event] = [e for e in sim.events if e["object_type"] == "lead" and e["action"] == "created"]
    for source in ("webhook", "catchup", "webhook"):
        assert not await runtime.inbox.add(event, source=source)
    await runtime.parts.catchup.run_once()  # type: ignore[union-attr]
    await asyncio.sleep(0)
    assert len(welcome_tasks(sim)) == 1
    assert len(await runtime.queue.list()) == 1


async def test_duplicated_reordered_and_delayed_deliveries_make_one_task_each(
    running: Any,
) -> None:
    faults = FaultConfig(
        webhooks=WebhookFaults(
            duplicate=0.5, reorder=0.4, delay=0.3, delay_seconds=0.3, reorder_hold_seconds=0.3
        )
    )
    runtime, sim = await running(TASKER, faults=faults, catchup=False)
    seen: list[Activity] = []
    runtime.feed.listeners.append(seen.append)
    async with sim.client() as client:
        leads = [(await client.leads.create({"name": f"Lead {n}"})).id for n in range(8)]
    await until(lambda: len(welcome_tasks(sim)) == 8 and not sim.webhooks.pending)
    events = [a for a in seen if a.kind == "event"]
    assert any(a.status == "duplicate" for a in events), "the faults did duplicate deliveries"
    assert sorted(t["lead_id"] for t in welcome_tasks(sim)) == sorted(leads)
    assert len(await runtime.queue.list()) == 8


async def test_events_missed_by_the_receiver_are_caught_up(running: Any) -> None:
    runtime, sim = await running(TASKER, subscribe=False)
    async with sim.client() as client:
        await client.leads.create({"name": "Missed"})
    assert welcome_tasks(sim) == []
    await runtime.parts.catchup.run_once()  # type: ignore[union-attr]
    await until(lambda: len(welcome_tasks(sim)) == 1)


async def test_runs_of_one_lead_execute_in_order(running: Any) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def record(ctx: Context) -> None:
        event = ctx.event or {}
        order.append(f"start {event['id']}")
        if event["id"] == "ev_1":
            await gate.wait()
        order.append(f"end {event['id']}")

    wf = Workflow("ordered", EventTrigger("lead", "updated"), POLICY, (record,))
    runtime, _ = await running(wf, concurrency=4)
    for n in (1, 2):
        event = {"id": f"ev_{n}", "object_type": "lead", "action": "updated", "lead_id": "L"}
        await runtime.inbox.add(event, source="webhook")
    other = {"id": "ev_3", "object_type": "lead", "action": "updated", "lead_id": "M"}
    await runtime.inbox.add(other, source="webhook")
    await until(lambda: "end ev_3" in order)
    assert order == ["start ev_1", "start ev_3", "end ev_3"]
    gate.set()
    await until(lambda: len(order) == 6)
    assert order[3:] == ["end ev_1", "start ev_2", "end ev_2"]


async def test_an_approval_gated_run_waits_and_completes_once_approved(
    running: Any, store: Store
) -> None:
    async def merge(ctx: Context) -> None:
        await ctx.client.leads.merge(ctx.event_data["id"], ctx.event_data["into"])

    wf = Workflow("merge", EventTrigger("lead", "updated"), POLICY, (merge,))
    runtime, sim = await running(wf, approvals_every=0.05)
    source, target = list(sim.state["leads"])[:2]
    event = {"id": "ev_m", "object_type": "lead", "action": "updated", "lead_id": source}
    event["data"] = {"id": source, "into": target}
    await runtime.inbox.add(event, source="webhook")
    waiting: list[Any] = []

    async def parked() -> bool:
        waiting[:] = await runtime.queue.list(status="waiting_approval")
        return bool(waiting)

    for _ in range(500):
        if await parked():
            break
        await asyncio.sleep(0.02)
    [run] = waiting
    assert source in sim.state["leads"]
    Approvals(store).approve(run.approval_id, by="test")
    await until(lambda: source not in sim.state["leads"])
    for _ in range(500):
        done = await runtime.queue.get(run.id)
        if done is not None and done.status == "completed":
            break
        await asyncio.sleep(0.02)
    assert done is not None and done.status == "completed"


class Flaky(httpx.AsyncBaseTransport):
    """Answers 503 to task creation while ``down``; everything else goes to the simulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down and request.method == "POST" and request.url.path.endswith("/task/"):
            return httpx.Response(503, json={"error": "unavailable"}, request=request)
        return await self.inner.handle_async_request(request)


async def test_transient_errors_retry_with_backoff_then_dead_letter_and_retry(
    store: Store,
) -> None:
    sim = Simulator(seed=5, leads=4)
    clock = FakeClock(auto_advance=False)
    queue = SqlRunQueue(store, clock=clock, backoff=Backoff(max_attempts=3, base=5.0))
    flaky = Flaky(sim.transport())
    executor = Executor(
        store=store,
        checkpointer=InMemorySaver(),
        api_key=sim.api_key,
        transport=flaky,
        base_url=BASE_URL,
        clock=FakeClock(),
    )
    worker = Worker(queue, executor, {"welcome": TASKER}, store=store)
    inbox = Inbox(store, [TASKER], queue)
    lead = next(iter(sim.state["leads"]))
    event = {"id": "ev_t", "object_type": "lead", "action": "created", "data": {"id": lead}}
    event["lead_id"] = lead
    await inbox.add(event, source="webhook")
    statuses = []
    for _ in range(3):
        assert await worker.run_one()
        [run] = await queue.list()
        statuses.append(run.status)
        assert not await worker.run_one(), "backing off"
        clock.advance(run.available_at - clock.now())
    assert statuses == ["queued", "queued", "dead"]
    assert run.error is not None and "ServerError" in run.error and "503" in run.error
    assert welcome_tasks(sim) == []
    flaky.down = False
    assert await queue.retry(run.id)
    assert await worker.run_one()
    done = await queue.get(run.id)
    assert done is not None and done.status == "completed" and done.error is None
    assert len(welcome_tasks(sim)) == 1


async def test_a_broken_workflow_fails_at_once_and_is_not_retried(store: Store) -> None:
    sim = Simulator(seed=5, leads=4)
    broken = Workflow("broken", EventTrigger("lead", "created"), "no-such-policy", (task_on_lead,))
    queue = SqlRunQueue(store)
    executor = Executor(
        store=store,
        checkpointer=InMemorySaver(),
        api_key=sim.api_key,
        transport=sim.transport(),
        base_url=BASE_URL,
    )
    worker = Worker(queue, executor, {"broken": broken}, store=store)
    await Inbox(store, [broken], queue).add(
        {"id": "ev_b", "object_type": "lead", "action": "created", "data": {"id": "x"}},
        source="webhook",
    )
    assert await worker.run_one()
    [run] = await queue.list()
    assert run.status == "failed" and run.error is not None and "ConfigError" in run.error
    assert "no-such-policy" in run.error


async def test_stopping_releases_a_run_still_going_after_the_grace_period(
    store: Store,
) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow(ctx: Context) -> None:
        ctx.state["first"] = True

    async def blocked(ctx: Context) -> None:
        started.set()
        await gate.wait()
        ctx.state["second"] = True

    wf = Workflow("slow", EventTrigger("lead", "updated"), POLICY, (slow, blocked))
    sim = Simulator(seed=5, leads=2)
    saver = InMemorySaver()

    def runtime() -> Runtime:
        return Runtime(
            [wf],
            store=store,
            checkpointer=saver,
            api_key=sim.api_key,
            transport=sim.transport(),
            base_url=BASE_URL,
            config=RuntimeConfig(roles=frozenset({"worker"}), grace=0.2, poll=0.05),
        )

    first, stop = runtime(), asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    event = {"id": "ev_s", "object_type": "lead", "action": "updated", "lead_id": "L"}
    await first.inbox.add(event, source="webhook")
    await asyncio.wait_for(started.wait(), 20)
    stop.set()
    await asyncio.wait_for(task, 20)
    [run] = await first.queue.list()
    assert (run.status, run.attempts, run.worker) == ("queued", 0, None)

    gate.set()
    second, stop = runtime(), asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    for _ in range(500):
        done = await second.queue.get(run.id)
        if done is not None and done.status == "completed":
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 20)
    assert done is not None and done.status == "completed"
    assert done.state == {"first": True, "second": True}
