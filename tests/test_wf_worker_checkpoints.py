"""A completed run's checkpoints are deleted once its record says completed; a failed or
dead run keeps them (``runs retry`` continues from them), and so does a run this worker
could not record as completed (another worker may hold it)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection

from closeguard.agent.runtime import LoopSqliteSaver, open_checkpointer
from closeguard.guardrails import Policy
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import Backoff, Completed, SqlRunQueue
from closeguard.workflows.worker import Worker

POLICY = Policy.from_dict({"name": "test-checkpoints", "grants": {"task": "write"}})


async def first(ctx: Context) -> None:
    ctx.state["first"] = True


async def task(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    await ctx.effect("task", lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": "Hi"}))


async def broken(ctx: Context) -> None:
    raise RuntimeError("a bug in the workflow")


async def unreachable(ctx: Context) -> None:
    raise httpx.ConnectError("Close is down")


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
    ) -> Completed:
        return Completed(recorded=False)


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[LoopSqliteSaver]:
    async with open_checkpointer(tmp_path / "checkpoints.db") as opened:
        yield opened


def rows_of(path: Path, run_id: str) -> int:
    """Checkpoints and pending writes stored for the run's thread."""
    with sqlite3.connect(path) as conn:
        return sum(
            conn.execute(f"SELECT count(*) FROM {table} WHERE thread_id = ?", (run_id,)).fetchone()[
                0
            ]
            for table in ("checkpoints", "writes")
        )


async def run_once(
    tmp_path: Path, saver: LoopSqliteSaver, *steps: Any, queue_type: type[SqlRunQueue] = SqlRunQueue
) -> tuple[str, str]:
    """Queue one lead.created run of a workflow of ``steps`` and execute it once: its id and
    the status recorded."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    sim = Simulator(seed=5, leads=2)
    workflow = Workflow("wf", EventTrigger("lead", "created"), POLICY, steps)
    queue = queue_type(store, backoff=Backoff(max_attempts=1))
    executor = Executor(
        store=store,
        checkpointer=saver,
        api_key=sim.api_key,
        transport=sim.transport(),
        base_url=BASE_URL,
    )
    worker = Worker(queue, executor, {"wf": workflow}, store=store)
    lead = next(iter(sim.state["leads"]))
    event = {"id": "ev_1", "object_type": "lead", "action": "created", "lead_id": lead}
    await Inbox(store, [workflow], queue).add({**event, "data": {"id": lead}}, source="webhook")
    assert await worker.run_one()
    [run] = await queue.list()
    store.dispose()
    return run.id, run.status


async def test_a_completed_run_leaves_no_checkpoint(tmp_path: Path, saver: LoopSqliteSaver) -> None:
    run_id, status = await run_once(tmp_path, saver, first, task)
    assert status == "completed"
    assert rows_of(tmp_path / "checkpoints.db", run_id) == 0


@pytest.mark.parametrize(
    ("failing", "expected"), [(broken, "failed"), (unreachable, "dead")], ids=["failed", "dead"]
)
async def test_a_failed_or_dead_run_keeps_its_checkpoints(
    tmp_path: Path, saver: LoopSqliteSaver, failing: Any, expected: str
) -> None:
    run_id, status = await run_once(tmp_path, saver, first, failing)
    assert status == expected
    assert rows_of(tmp_path / "checkpoints.db", run_id) > 0
    snapshot = saver.get_tuple({"configurable": {"thread_id": run_id, "checkpoint_ns": ""}})
    assert snapshot is not None and snapshot.checkpoint["channel_values"]["state"] == {
        "first": True
    }


async def test_a_run_not_recorded_completed_by_this_worker_keeps_them(
    tmp_path: Path, saver: LoopSqliteSaver
) -> None:
    run_id, status = await run_once(tmp_path, saver, first, task, queue_type=LostLease)
    assert status == "running"
    assert rows_of(tmp_path / "checkpoints.db", run_id) > 0
