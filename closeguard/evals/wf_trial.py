"""Workflow trials (filled in below)."""

from __future__ import annotations

from closeguard.evals.format import Task
from closeguard.evals.trial import Outcome
from closeguard.simulator import Simulator
from closeguard.store import Store

__all__ = ["run_workflow_task"]


async def run_workflow_task(
    task: Task, sim: Simulator, *, store: Store, noop: bool, guard: bool
) -> Outcome:
    raise NotImplementedError
