"""Run a workflow once in a test, through the real executor, and see how it ended.

::

    sim = Simulator(seed=1)
    result = await run_workflow(WORKFLOW, transport=sim.transport(), api_key=sim.api_key,
                                event=event, store=store)
    assert result.status == "completed"

The run goes through everything a production run does: its steps as LangGraph nodes
checkpointed under the run id, the guarded client under the workflow's own policy (actor:
the workflow's name, ``run_id``: the run's, the triggered lead in scope) and the effect
journal. A run that stops for an approval comes back ``waiting_approval`` with its
``approval_id``; decide it in the store (``Approvals(store).approve(...)``) and call
``resume_workflow`` with the same ``run_id`` and store to finish it.
"""

from __future__ import annotations

import tempfile
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.tools.clock import Clock
from closeguard.workflows.definition import Workflow
from closeguard.workflows.executor import Executor, OutcomeStatus, RunSpec

__all__ = ["RunResult", "resume_workflow", "run_workflow"]

SIM_BASE_URL = "http://simulator.local/api/v1"

_savers: weakref.WeakKeyDictionary[Store, BaseCheckpointSaver[Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``completed``, ``failed`` (``error`` says why, a denial names its
    rule), ``waiting_approval`` (``approval_id``), ``rejected``, or ``deferred`` (a
    per-window limit ran out; the runtime would run it again when the window ends);
    ``state`` is what the steps left in ``ctx.state``."""

    run_id: str
    status: OutcomeStatus
    state: dict[str, Any]
    error: str | None = None
    approval_id: str | None = None


def _temporary_store() -> Store:
    folder = Path(tempfile.mkdtemp(prefix="closeguard-wf-"))
    return Store(f"sqlite:///{folder / 'store.db'}")


def _saver(store: Store) -> BaseCheckpointSaver[Any]:
    """One in-memory checkpointer per store, so ``resume_workflow`` finds the thread."""
    if store not in _savers:
        _savers[store] = InMemorySaver()
    return _savers[store]


def _spec(
    workflow: Workflow,
    run_id: str,
    event: Mapping[str, Any] | None,
    tick: datetime | None,
    params: Mapping[str, Any] | None,
) -> RunSpec:
    return RunSpec(
        run_id=run_id,
        workflow=workflow.name,
        event=event,
        tick=tick,
        params=dict(params or {}),
        lead_id=workflow.lead_for(event),
    )


async def _execute(
    workflow: Workflow,
    spec: RunSpec,
    store: Store,
    transport: httpx.AsyncBaseTransport,
    api_key: str,
    base_url: str,
    clock: Clock | None,
    llm: BaseChatModel | None,
    *,
    resume: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run or continue ``spec`` with a fresh executor on ``store`` and report where it ended."""
    executor = Executor(
        store=store,
        checkpointer=_saver(store),
        api_key=api_key,
        transport=transport,
        base_url=base_url,
        clock=clock,
        llm=llm,
    )
    outcome = await executor.execute(workflow, spec, resume=resume)
    return RunResult(spec.run_id, outcome.status, outcome.state, outcome.error, outcome.approval_id)


async def run_workflow(
    workflow: Workflow,
    *,
    transport: httpx.AsyncBaseTransport,
    api_key: str,
    event: Mapping[str, Any] | None = None,
    tick: datetime | None = None,
    params: Mapping[str, Any] | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
    llm: BaseChatModel | None = None,
    run_id: str | None = None,
    base_url: str = SIM_BASE_URL,
) -> RunResult:
    """Run ``workflow`` once for ``event`` / ``tick`` / ``params`` and report the end.

    ``store`` holds the audit, approvals and effect journal (a temporary SQLite file when
    None). The same ``run_id`` twice is a retry of that run: effects already journaled are
    not made again.
    """
    store = store or _temporary_store()
    spec = _spec(workflow, run_id or f"run_{uuid.uuid4().hex[:12]}", event, tick, params)
    return await _execute(workflow, spec, store, transport, api_key, base_url, clock, llm)


async def resume_workflow(
    workflow: Workflow,
    waiting: RunResult,
    *,
    transport: httpx.AsyncBaseTransport,
    api_key: str,
    store: Store,
    event: Mapping[str, Any] | None = None,
    tick: datetime | None = None,
    params: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    llm: BaseChatModel | None = None,
    base_url: str = SIM_BASE_URL,
) -> RunResult:
    """Continue a run that was ``waiting_approval`` once its approval is decided.

    Approved: the step runs again and the guard uses the approval for exactly that call.
    Rejected or expired: the run ends ``rejected`` and the step is not run again. Pass the
    same store and trigger (``event`` / ``tick`` / ``params``) as the first call.
    """
    if waiting.approval_id is None:
        raise ValueError(f"run {waiting.run_id} is {waiting.status}, not waiting for approval")
    approval = Approvals(store).get(waiting.approval_id)
    status = approval.status if approval is not None else "missing"
    if status == "pending":
        return waiting
    if status != "approved":
        return RunResult(
            waiting.run_id,
            "rejected",
            waiting.state,
            f"RunRejected: approval {waiting.approval_id} was {status}",
        )
    spec = _spec(workflow, waiting.run_id, event, tick, params)
    answer = {"approval_id": waiting.approval_id, "status": status}
    return await _execute(
        workflow, spec, store, transport, api_key, base_url, clock, llm, resume=answer
    )
