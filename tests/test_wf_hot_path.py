"""The runtime's store hot path (issue 23): few trips to the store's thread and few
commits per run, a claim that finds nothing writes nothing, one lane woken per new run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from closeguard.agent.runtime import LoopSqliteSaver, open_checkpointer
from closeguard.guardrails import AuditLog, Policy
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.store.effects import EffectRows
from closeguard.store.runs import RunRow
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import SqlRunQueue
from closeguard.workflows.worker import Worker

POLICY = Policy.from_dict({"name": "test-hot-path", "grants": {"task": "write"}})


async def intro(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]

    async def find() -> Any:
        return None

    await ctx.effect(
        "task",
        lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": "Intro"}),
        find=find,
    )


WORKFLOW = Workflow("hot", EventTrigger("lead", "created"), POLICY, (intro,))


class Commits:
    """COMMIT statements SQLite runs on a store's connections (its trace hook)."""

    def __init__(self, store: Store) -> None:
        self.count = 0
        store.engine.dispose()
        event.listen(store.engine, "connect", self._watch)

    def _watch(self, dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        if statement.startswith("COMMIT"):
            self.count += 1


class CountingQueue(SqlRunQueue):
    """Counts the claims made on their own (not merged into another transaction)."""

    claims = 0

    async def claim(self, worker: str, workflows: Collection[str] | None = None) -> RunRow | None:
        self.claims += 1
        return await super().claim(worker, workflows)


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[LoopSqliteSaver]:
    async with open_checkpointer(tmp_path / "checkpoints.db") as opened:
        yield opened


def setup(
    tmp_path: Path, saver: LoopSqliteSaver, concurrency: int = 1
) -> tuple[Store, Simulator, CountingQueue, Worker, Inbox]:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    sim = Simulator(seed=5, leads=6)
    queue = CountingQueue(store)
    executor = Executor(
        store=store,
        checkpointer=saver,
        api_key=sim.api_key,
        transport=sim.transport(),
        base_url=BASE_URL,
    )
    worker = Worker(
        queue,
        executor,
        {"hot": WORKFLOW},
        store=store,
        concurrency=concurrency,
        poll=30,
        approvals_every=3600,  # its look at parked runs happens once, at the start
    )
    inbox = Inbox(store, [WORKFLOW], queue)
    return store, sim, queue, worker, inbox


async def quiet(store: Store, still: float = 0.5, within: float = 30.0) -> None:
    """Wait until no trip to the store has been made for ``still`` seconds: the worker's
    start-up trips (each lane's first claim, the approvals watcher's first look) are over,
    however long a busy machine makes them take."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen, since = store.trips, loop.time()
    while loop.time() - since < still:
        assert loop.time() < deadline, "the store never went quiet"
        await asyncio.sleep(0.05)
        if store.trips != seen:
            seen, since = store.trips, loop.time()


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    """Poll ``check`` (bounded) while the event loop works."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def drain(worker: Worker, runs: int) -> None:
    """Run ``worker`` until it has executed ``runs`` runs, then stop it."""
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await until(lambda: worker.executed >= runs)
    stop.set()
    await running


def lead_events(sim: Simulator) -> list[dict[str, Any]]:
    return [
        {"id": f"ev_{lead}", "object_type": "lead", "action": "created", "lead_id": lead}
        | {"data": {"id": lead}}
        for lead in sim.state["leads"]
    ]


def test_a_claim_that_finds_nothing_writes_nothing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    commits = Commits(store)
    queue = SqlRunQueue(store)
    for _ in range(20):
        assert queue.rows.claim("w", 60.0, workflows=["hot"]) is None
    assert commits.count == 0, "an empty claim only reads"
    store.dispose()


async def test_completing_a_run_claims_the_next_in_the_same_trip(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    """Runs queued ahead: each run costs its journal's intent, its result (committed before
    the step's checkpoint) and one trip that records its outcome (with its audit rows) and
    claims the next run."""
    store, sim, queue, worker, inbox = setup(tmp_path, saver)
    events = lead_events(sim)
    await inbox.add_many(events, source="webhook")
    commits = Commits(store)
    before = store.trips
    await drain(worker, len(events))
    runs = await queue.list(status="completed")
    assert len(runs) == len(events)
    assert queue.claims == 1, "only the first run was claimed on its own"
    # per run: the journal's intent and result, then the outcome with the next claim;
    # besides them the first claim and the approvals watcher's first look (expire, list)
    trips = store.trips - before
    assert trips <= 3 * len(events) + 4, f"{trips} trips to the store for {len(events)} runs"
    assert commits.count <= 3 * len(events) + 2, f"{commits.count} commits"
    journal = EffectRows(store)
    assert all(journal.get(r.id, "task").status == "done" for r in runs)  # type: ignore[union-attr]
    audited = {row["run_id"] for row in AuditLog(store).rows()}
    assert audited >= {r.id for r in runs}, "every run's calls are in the audit log"
    assert AuditLog(store).verify().ok
    store.dispose()


async def test_a_new_run_wakes_one_idle_lane(tmp_path: Path, saver: LoopSqliteSaver) -> None:
    """Four idle lanes and one run queued: one claim, not four (the others keep waiting)."""
    store, sim, queue, worker, inbox = setup(tmp_path, saver, concurrency=4)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await until(lambda: worker.idle_lanes >= 4)
    claims = queue.claims
    await inbox.add(lead_events(sim)[0], source="webhook")
    worker.nudge()
    await until(lambda: worker.executed >= 1)
    await until(lambda: worker.idle_lanes >= 4)
    assert queue.claims - claims == 1
    stop.set()
    await running
    assert [r.status for r in await queue.list()] == ["completed"]
    store.dispose()


async def test_the_inbox_hands_a_new_run_to_an_idle_lane(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    """With the worker's lanes registered, the inbox claims the new run for an idle lane in
    the transaction that queues it: no claim of its own, and the nudge that follows wakes
    nobody else."""
    store, sim, queue, worker, inbox = setup(tmp_path, saver, concurrency=2)
    inbox.lanes = worker
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await until(lambda: worker.idle_lanes >= 2)
    await quiet(store)  # the lanes' first claims and the approvals watcher's first look
    claims = queue.claims
    before, handoffs = store.trips, store.handoffs
    await inbox.add(lead_events(sim)[0], source="webhook")
    worker.nudge()
    await until(lambda: worker.executed >= 1)
    stop.set()
    await running
    assert queue.claims == claims, "the run came with the inbox's transaction"
    assert store.trips - before <= 4, "intake with the claim, intent, result, outcome"
    assert store.handoffs == handoffs, "a run's trips ran in the loop's thread, none handed off"
    assert [r.status for r in await queue.list()] == ["completed"]
    store.dispose()


async def test_a_run_handed_over_but_not_started_is_released_on_stop(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    store, sim, queue, worker, inbox = setup(tmp_path, saver)
    await inbox.add(lead_events(sim)[0], source="webhook")
    [claimed] = await store.run(lambda: _claim(worker, store))
    worker.take([claimed], 0)
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)
    [run] = await queue.list()
    assert run.status == "queued" and run.worker is None
    store.dispose()


def _claim(worker: Worker, store: Store) -> list[RunRow]:
    with store.engine.begin() as conn:
        return worker.claim_in(conn, 1)


class Watching(httpx.AsyncBaseTransport):
    """The simulator's transport, noting for each task create what the journal holds for
    its run as the call arrives (the intent must be committed by then)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, store: Store) -> None:
        self.inner = inner
        self.rows = EffectRows(store)
        self.runs: dict[str, str] = {}
        """Lead id -> its run's id."""
        self.seen: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.rstrip("/").endswith("/task"):
            run_id = self.runs[json.loads(request.content)["lead_id"]]
            row = self.rows.get(run_id, "task")
            self.seen.append(None if row is None else row.status)
        return await self.inner.handle_async_request(request)


async def test_a_writes_intent_is_committed_with_its_calls_quota_before_the_call_leaves(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    """Once a run showed the write goes through the guard, a journaled write's intent takes
    no trip of its own: the guard commits it in the call's transaction, before the call
    reaches Close."""
    store, sim, queue, worker, inbox = setup(tmp_path, saver)
    watching = Watching(sim.transport(), store)
    worker.executor.transport.inner = watching
    events = lead_events(sim)
    await inbox.add_many(events, source="webhook")
    watching.runs = {str(r.lead_id): r.id for r in await queue.list()}
    before = store.trips
    await drain(worker, len(events))
    assert watching.seen == ["intent"] * len(events), "each intent was in before its call"
    # the first run: its claim, its intent, the call's charge, its outcome with the next
    # claim; each other run: the charge with its intent, and its outcome; the approvals
    # watcher's first look
    trips = store.trips - before
    assert trips <= 2 * len(events) + 3, f"{trips} trips for {len(events)} runs"
    runs = await queue.list(status="completed")
    assert len(runs) == len(events)
    journal = EffectRows(store)
    assert all(journal.get(r.id, "task").status == "done" for r in runs)  # type: ignore[union-attr]
    store.dispose()
