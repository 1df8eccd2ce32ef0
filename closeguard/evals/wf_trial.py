"""Workflow trials: the task's packaged workflow through the real runtime path.

The ``setup`` calls are made as a person would (unguarded, and free of the task's faults,
which apply to what the workflow does), so the simulator records the very events Close
would. Those that trigger the workflow are then delivered to the durable inbox in the
task's ``deliveries.order`` (a repeated index is a duplicated webhook, a permutation an
out-of-order one, a missing index a missed one), and Event Log
catch-up, under the ``event-intake`` policy as in ``closeguard run``, brings back what
was missed. Schedule ticks go in twice (a second scheduler firing the same tick) and
manual runs once. A worker then drains the run queue through the executor (the
workflow's own policy, effect journal, checkpoints); pending approvals are answered as
the task says and the parked runs resumed. ``noop`` delivers everything and runs nothing.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.evals.format import Task
from closeguard.evals.graders import actions_from_audit
from closeguard.evals.trial import IGNORED, Outcome, run_setup
from closeguard.guardrails import Approvals, AuditLog, Guarded, Policy
from closeguard.simulator import BASE_URL, FakeClock, Simulator
from closeguard.store import Store
from closeguard.store.cursors import Cursors
from closeguard.tools.errors import ConfigError
from closeguard.workflows import EventTrigger, Workflow, packaged_workflows
from closeguard.workflows.catchup import CatchUp
from closeguard.workflows.executor import Executor
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import SqlRunQueue
from closeguard.workflows.worker import Worker

__all__ = ["MAX_RUNS", "drain", "eval_worker", "run_workflow_task", "workflow_of"]

MAX_RUNS = 200
"""Runs one trial may execute: a bound, so a run that re-queues itself cannot spin forever."""


def workflow_of(task: Task) -> Workflow:
    found = packaged_workflows().get(task.workflow or "")
    if found is None:
        known = ", ".join(packaged_workflows())
        raise ConfigError(f"task {task.id}: no packaged workflow {task.workflow!r} ({known})")
    return found


async def _deliver(
    task: Task, sim: Simulator, workflow: Workflow, inbox: Inbox, store: Store, seen: int
) -> list[str]:
    """Put the task's trigger into the inbox; notes on what happened, for the report."""
    notes: list[str] = []
    if task.deliveries is not None:
        trigger = workflow.trigger
        events = [
            dict(e)
            for e in sim.events[seen:]
            if isinstance(trigger, EventTrigger) and trigger.matches(e)
        ]
        for index in task.deliveries.order:
            if index >= len(events):
                raise ConfigError(
                    f"task {task.id}: delivery {index} but the setup made {len(events)} "
                    f"event(s) {workflow.name} reacts to"
                )
            await inbox.add(events[index], source="webhook")
        if task.deliveries.catch_up:
            added = await _catch_up(sim, inbox, store)
            notes.append(f"catch-up added {added} missed event(s)")
    elif task.tick is not None:
        tick = datetime.fromisoformat(task.tick)
        for _ in range(2):
            await inbox.add_tick(workflow.name, tick)
    else:
        await inbox.add_manual(workflow.name, dict(task.params or {}))
    return notes


@cache
def _intake_policy() -> Policy:
    """``closeguard run``'s intake policy, parsed once per process (it is immutable)."""
    return Policy.load("event-intake")


async def _catch_up(sim: Simulator, inbox: Inbox, store: Store) -> int:
    intake = Guarded(_intake_policy(), store=store)
    async with sim.client(policy=intake, actor="closeguard-intake") as client:
        catch = CatchUp(
            client,
            inbox,
            Cursors(store),
            clock=sim.clock,
        )
        result = await catch.run_once()
    return result.stored


def eval_worker(
    workflow: Workflow,
    sim: Simulator,
    store: Store,
    queue: SqlRunQueue,
    llm: BaseChatModel | None = None,
) -> Worker:
    """A worker for ``workflow`` on ``queue``, its executor calling ``sim``."""
    executor = Executor(
        store=store,
        checkpointer=InMemorySaver(),
        api_key=sim.api_key,
        transport=sim.transport(),
        base_url=BASE_URL,
        clock=sim.clock,
        llm=llm,
    )
    return Worker(queue, executor, {workflow.name: workflow}, store=store, name="eval")


async def drain(
    worker: Worker, queue: SqlRunQueue, approvals: Approvals, answer: str, clock: FakeClock
) -> int:
    """Run everything queued; answer approvals as told and resume parked runs; a run
    retried later (after a transient failure) is waited for on the fake clock."""
    executed = 0
    while executed < MAX_RUNS:
        if await worker.run_one():
            executed += 1
            continue
        pending = approvals.list("pending")
        if not pending:
            later = [r.available_at for r in await queue.list(status="queued", limit=500)]
            if not later:
                break
            clock.advance_to(min(later) + 0.001)
            continue
        for approval in pending:
            if answer == "approve":
                approvals.approve(approval.id, by="eval")
            else:
                approvals.reject(approval.id, by="eval", note="not approved in this eval")
        await worker.check_approvals()
    return executed


async def run_workflow_task(
    task: Task,
    sim: Simulator,
    *,
    store: Store,
    noop: bool,
    guard: bool,
    llm: BaseChatModel | None = None,
) -> Outcome:
    """One workflow trial (``guard`` is moot: a workflow always runs under its own policy)."""
    workflow = workflow_of(task)
    seen = len(sim.events)
    await run_setup(sim, task.setup)
    before = sim.snapshot(IGNORED)
    queue = SqlRunQueue(store, clock=sim.clock)
    inbox = Inbox(store, [workflow], queue)
    notes = await _deliver(task, sim, workflow, inbox, store, seen)
    if not noop:
        worker = eval_worker(workflow, sim, store, queue, llm)
        assert isinstance(sim.clock, FakeClock), "eval trials run on a fake clock"
        answer = "approve" if task.approvals == "approve" else "reject"
        executed = await drain(worker, queue, Approvals(store), answer, sim.clock)
        notes.append(f"{executed} run(s) executed")
        notes.extend(await _run_states(queue))
    outcome = Outcome(before=before, after=sim.snapshot(IGNORED), notes=notes)
    rows = [r for r in AuditLog(store).rows() if r.get("actor") == workflow.name]
    outcome.actions = actions_from_audit(rows)
    return outcome


async def _run_states(queue: SqlRunQueue) -> list[str]:
    runs: list[Any] = await queue.list()
    return [f"run {r.id}: {r.status}" + (f" ({r.error})" if r.error else "") for r in runs]
