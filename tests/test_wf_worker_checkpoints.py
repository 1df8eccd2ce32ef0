"""What a run writes to the checkpointer, counted: nothing when it completes without
waiting; one checkpoint (and its pending writes) when it stops (fails, dies, waits for an
approval), which a retry or the approval's resume continues from and ``forget`` deletes once
the run is recorded completed; at most one per step for a durable (model-asking) workflow.
A run whose completion this worker could not record leaves nothing either: whoever claims
it next runs it again, and the effect journal keeps its writes from doubling."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.pregel import Pregel
from sqlalchemy import Connection

from closeguard.agent.runtime import LoopSqliteSaver, open_checkpointer
from closeguard.guardrails import Approvals, Policy
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.tools.clock import FakeClock
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor, RunSpec
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import Backoff, Completed, SqlRunQueue
from closeguard.workflows.worker import Worker

POLICY = Policy.from_dict(
    {"name": "test-checkpoints", "grants": {"task": "write"}, "approve": ["task.update"]}
)
SAVES = ("aput", "aput_writes", "adelete_thread")


FIRSTS = Counter[str]()


async def first(ctx: Context) -> None:
    FIRSTS[ctx.run_id] += 1
    ctx.state["first"] = True


async def second(ctx: Context) -> None:
    ctx.state["second"] = True


async def task(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    made = await ctx.effect(
        "task", lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": "Hi"})
    )
    ctx.state["task"] = made["id"]


async def gated(ctx: Context) -> None:
    await ctx.client.tasks.update(ctx.state["task"], {"text": "Hi again"})
    ctx.state["gated"] = True


FAILURES = Counter[str]()


async def broken(ctx: Context) -> None:
    """Fails the first time only (a bug, then its fix deployed)."""
    FAILURES[ctx.run_id] += 1
    if FAILURES[ctx.run_id] == 1:
        raise RuntimeError("a bug in the workflow")
    ctx.state["second"] = True


async def unreachable(ctx: Context) -> None:
    """Fails the first time only (Close down, then back)."""
    FAILURES[ctx.run_id] += 1
    if FAILURES[ctx.run_id] == 1:
        raise httpx.ConnectError("Close is down")
    ctx.state["second"] = True


class LostLease(SqlRunQueue):
    """A queue on which this worker's ``complete`` no longer lands (its lease was taken)."""

    async def complete(
        self,
        run_id: str,
        worker: str,
        state: Mapping[str, Any],
        *,
        before: Callable[[Connection], None] | None = None,
        claim: Collection[str] | None = None,
        after: Callable[[], Any] | None = None,
    ) -> Completed:
        return Completed(recorded=False)


def counted(saver: LoopSqliteSaver) -> Counter[str]:
    """Count each call of ``saver`` that writes or deletes."""
    calls: Counter[str] = Counter()
    for name in SAVES:
        inner = getattr(saver, name)

        def counting(*args: Any, _inner: Any = inner, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return _inner(*args, **kw)

        setattr(saver, name, counting)
    return calls


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[LoopSqliteSaver]:
    async with open_checkpointer(tmp_path / "checkpoints.db") as opened:
        yield opened


def rows_of(path: Path, run_id: str) -> dict[str, int]:
    """Checkpoints and pending writes stored for the run's thread."""
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE thread_id = ?", (run_id,)
            ).fetchone()[0]
            for table in ("checkpoints", "writes")
        }


class Bench:
    """One store, simulator, queue and worker for a workflow of ``steps``."""

    def __init__(
        self,
        tmp_path: Path,
        saver: LoopSqliteSaver,
        steps: Sequence[Any],
        *,
        queue_type: type[SqlRunQueue] = SqlRunQueue,
        uses_llm: bool = False,
    ) -> None:
        self.store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        self.sim = Simulator(seed=5, leads=2)
        self.clock = FakeClock()
        self.workflow = Workflow(
            "wf", EventTrigger("lead", "created"), POLICY, steps, uses_llm=uses_llm
        )
        self.queue = queue_type(self.store, backoff=Backoff(max_attempts=1), clock=self.clock)
        self.saver = saver
        self.worker = self.worker_named("one", queue=self.queue)

    def worker_named(self, name: str, queue: SqlRunQueue | None = None) -> Worker:
        executor = Executor(
            store=self.store,
            checkpointer=self.saver,
            api_key=self.sim.api_key,
            transport=self.sim.transport(),
            base_url=BASE_URL,
        )
        queue = queue or SqlRunQueue(self.store, clock=self.clock)
        return Worker(queue, executor, {"wf": self.workflow}, store=self.store, name=name)

    async def queue_one(self) -> str:
        lead = next(iter(self.sim.state["leads"]))
        event = {"id": "ev_1", "object_type": "lead", "action": "created", "lead_id": lead}
        inbox = Inbox(self.store, [self.workflow], self.queue)
        await inbox.add({**event, "data": {"id": lead}}, source="webhook")
        [run] = await self.queue.list()
        return run.id

    async def status(self, run_id: str) -> str:
        run = await self.queue.get(run_id)
        assert run is not None
        return run.status


async def test_a_run_that_completes_without_waiting_writes_no_checkpoint(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    calls = counted(saver)
    bench = Bench(tmp_path, saver, (first, task, second))
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    assert await bench.status(run_id) == "completed"
    assert calls == Counter(), "no checkpoint, no pending write, nothing to delete"
    assert rows_of(tmp_path / "checkpoints.db", run_id) == {"checkpoints": 0, "writes": 0}
    bench.store.dispose()


@pytest.mark.parametrize(
    ("failing", "expected"), [(broken, "failed"), (unreachable, "queued")], ids=["bug", "down"]
)
async def test_a_run_that_fails_keeps_one_checkpoint_and_its_retry_continues_from_it(
    tmp_path: Path, saver: LoopSqliteSaver, failing: Any, expected: str
) -> None:
    calls = counted(saver)
    bench = Bench(tmp_path, saver, (first, task, failing))
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    assert await bench.status(run_id) == expected
    assert calls["aput"] == 1, "one checkpoint: where the run stopped"
    rows = rows_of(tmp_path / "checkpoints.db", run_id)
    assert rows["checkpoints"] == 1 and rows["writes"] >= 1, "with the failed step's error"
    snapshot = saver.get_tuple({"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
    assert snapshot is not None
    state = snapshot.checkpoint["channel_values"]["state"]
    assert state["first"] is True and state["task"] in bench.sim.state["tasks"]

    tasks = set(bench.sim.state["tasks"])
    if expected == "failed":
        assert await bench.queue.retry(run_id)  # ``runs retry`` once the fix is deployed
    bench.clock.advance(3600)  # past a transient failure's backoff
    assert await bench.worker.run_one()
    assert FAILURES[run_id] == 2
    assert FIRSTS[run_id] == 1, "the retry began at the step that failed"
    assert await bench.status(run_id) == "completed"
    assert set(bench.sim.state["tasks"]) == tasks, "the task was not made again"
    done = await bench.queue.get(run_id)
    assert done is not None and done.state == {**state, "second": True}
    assert calls["aput"] == 1, "the completing retry saved nothing more"
    assert calls["adelete_thread"] == 1, "and the checkpoint it resumed from is deleted"
    assert rows_of(tmp_path / "checkpoints.db", run_id) == {"checkpoints": 0, "writes": 0}
    bench.store.dispose()


async def test_a_run_waiting_for_approval_keeps_one_checkpoint_until_it_completes(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    calls = counted(saver)
    bench = Bench(tmp_path, saver, (first, task, gated, second))
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    run = await bench.queue.get(run_id)
    assert run is not None and run.status == "waiting_approval" and run.approval_id
    assert calls["aput"] == 1
    assert rows_of(tmp_path / "checkpoints.db", run_id)["checkpoints"] == 1

    Approvals(bench.store).approve(run.approval_id, by="ann", via="cli")
    later = bench.worker_named("two")  # another process resumes it
    assert await later.check_approvals() == 1
    assert await later.run_one()
    done = await bench.queue.get(run_id)
    assert done is not None and done.status == "completed"
    assert done.state["gated"] is True and done.state["second"] is True
    assert FIRSTS[run_id] == 1, "resumed in the step that asked"
    assert calls["aput"] == 1, "resuming to the end saved nothing more"
    assert rows_of(tmp_path / "checkpoints.db", run_id) == {"checkpoints": 0, "writes": 0}
    bench.store.dispose()


async def test_a_durable_run_writes_at_most_one_checkpoint_per_step(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    calls = counted(saver)
    bench = Bench(tmp_path, saver, (first, task, second), uses_llm=True)
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    assert await bench.status(run_id) == "completed"
    assert calls["aput"] == 3, "one per step: neither the input's nor the start's"
    assert calls["aput_writes"] == 0, "a step's writes are in the checkpoint after it"
    assert calls["adelete_thread"] == 1
    assert rows_of(tmp_path / "checkpoints.db", run_id) == {"checkpoints": 0, "writes": 0}
    bench.store.dispose()


async def test_a_run_not_recorded_completed_by_this_worker_runs_again_without_doubling(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    calls = counted(saver)
    bench = Bench(tmp_path, saver, (first, task, second), queue_type=LostLease)
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    assert await bench.status(run_id) == "running"
    assert calls == Counter(), "nothing saved, and nothing deleted for a run not recorded"
    tasks = set(bench.sim.state["tasks"])

    bench.clock.advance(bench.queue.lease + 1)
    other = bench.worker_named("two")
    assert await other.run_one(), "the lease ran out: another worker claims the run"
    assert await bench.status(run_id) == "completed"
    assert set(bench.sim.state["tasks"]) == tasks, "its task is the journal's, not a new one"
    bench.store.dispose()


def pregel_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the graph executions (``Pregel.astream``, under ``ainvoke``) of every graph."""
    runs: list[str] = []
    real = Pregel.astream

    def counting(self: Pregel[Any, Any, Any, Any], *args: Any, **kw: Any) -> Any:
        runs.append(self.name)
        return real(self, *args, **kw)

    monkeypatch.setattr(Pregel, "astream", counting)
    return runs


async def test_a_fresh_run_that_does_not_stop_never_enters_langgraph(
    tmp_path: Path, saver: LoopSqliteSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = pregel_runs(monkeypatch)
    bench = Bench(tmp_path, saver, (first, task, second))
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    done = await bench.queue.get(run_id)
    assert done is not None and done.status == "completed"
    assert done.state == {"first": True, "task": done.state["task"], "second": True}
    assert runs == [], "its steps ran straight, without Pregel"
    bench.store.dispose()


async def test_a_fresh_run_that_stops_is_handed_to_the_graph_once(
    tmp_path: Path, saver: LoopSqliteSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = pregel_runs(monkeypatch)
    bench = Bench(tmp_path, saver, (first, task, gated, second))
    run_id = await bench.queue_one()
    assert await bench.worker.run_one()
    run = await bench.queue.get(run_id)
    assert run is not None and run.status == "waiting_approval"
    assert len(runs) == 1, "the graph ran only to record the approval's interrupt"
    snapshot = saver.get_tuple({"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
    assert snapshot is not None
    state = snapshot.checkpoint["channel_values"]["state"]
    assert state == run.state and state["first"] is True and "gated" not in state
    interrupts = [w for w in snapshot.pending_writes or () if w[1] == "__interrupt__"]
    assert len(interrupts) == 1, "the gated step's interrupt, as if the graph had run it"
    asked = Approvals(bench.store).list()
    assert [a.id for a in asked] == [run.approval_id], "the step asked once, not twice"
    bench.store.dispose()


STARTED: dict[str, asyncio.Event] = {}


async def hangs(ctx: Context) -> None:
    """Waits forever the first time (a process told to stop mid-step), then passes."""
    FAILURES[ctx.run_id] += 1
    if FAILURES[ctx.run_id] == 1:
        STARTED[ctx.run_id].set()
        await asyncio.Event().wait()
    ctx.state["second"] = True


async def test_a_fresh_run_cancelled_mid_step_keeps_the_checkpoint_before_that_step(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    calls = counted(saver)
    bench = Bench(tmp_path, saver, (first, task, hangs))
    run_id = await bench.queue_one()
    STARTED[run_id] = asyncio.Event()
    executor = bench.worker.executor
    spec = RunSpec(run_id, "wf", event={"data": {"id": next(iter(bench.sim.state["leads"]))}})
    running = asyncio.create_task(executor.execute(bench.workflow, spec))
    await STARTED[run_id].wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert calls["aput"] == 1, "the checkpoint after the last completed step"
    snapshot = saver.get_tuple({"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
    assert snapshot is not None
    state = snapshot.checkpoint["channel_values"]["state"]
    assert state["first"] is True and state["task"] in bench.sim.state["tasks"]

    tasks = set(bench.sim.state["tasks"])
    outcome = await executor.execute(bench.workflow, spec)
    assert outcome.status == "completed" and outcome.state == {**state, "second": True}
    assert FIRSTS[run_id] == 1, "the next execution began in the step cut off"
    assert set(bench.sim.state["tasks"]) == tasks
    bench.store.dispose()
