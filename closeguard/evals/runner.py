"""The runner: every task of every suite, ``trials`` times each, ``concurrency`` at a time.

Per suite the world is built once; per trial the simulator is fresh (a copy of that world
on its own fake clock, faults seeded with the trial's seed) and so is the store (in
memory: audit log, approvals, effect journal). Before any trial, each task's reference
solution is replayed on a fresh world: a task whose reference does not pass is reported
``broken`` with the reason and never graded. A trial that raises is a failure with its
traceback kept; one that overruns its timeout is a failure too. A fault task's reference
is replayed under several seeds: a seed it fails under is ``infeasible`` and trials drawn
with it are not graded. ``previous`` (a partial
report of the same run) makes the run resume: trials already in it are not run again.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from closeguard.agent import ModelError
from closeguard.evals.format import NumberFact, Task
from closeguard.evals.graders import Grade, numbers_in, resolve_facts
from closeguard.evals.loader import LoadedSuite, copied_facts
from closeguard.evals.models import make_model, task_model, workflow_llm
from closeguard.evals.trial import Outcome, grade, run_chat
from closeguard.evals.wf_trial import run_workflow_task
from closeguard.evals.world import BuiltWorld, build_world
from closeguard.simulator.hashing import diff
from closeguard.store import Store
from closeguard.tools.errors import CloseguardError

__all__ = ["RunOptions", "TaskRun", "resolve_task", "run_suites"]

Key = tuple[str, str, int]


@dataclass(frozen=True)
class RunOptions:
    model: str = "reference"
    trials: int = 1
    concurrency: int = 4
    seed: int = 0
    guard: bool = True
    timeout: float | None = None
    """Overrides every task's own timeout (seconds of real time)."""
    tasks: tuple[str, ...] = ()
    """Run only these tasks (``id`` or ``suite/id``); empty: every task."""

    def wants(self, suite: str, task: str) -> bool:
        return not self.tasks or task in self.tasks or f"{suite}/{task}" in self.tasks

    def config(self) -> dict[str, Any]:
        """What must match for a report to be resumed."""
        return {"model": self.model, "seed": self.seed, "guard": self.guard}


@dataclass
class TaskRun:
    """One task's place in the run: its resolved form (or why it is broken) and trials."""

    suite: str
    task: Task
    where: str
    resolved: Task | None = None
    broken: str | None = None
    needs_change: bool = False
    trials: dict[int, dict[str, Any]] = field(default_factory=dict)
    replay: dict[str, Any] | None = None
    """The reference replay's own result (a ``reference`` run's trial 0 is that replay)."""
    infeasible: dict[int, str] = field(default_factory=dict)
    """Fault seeds under which the reference itself fails, and why: trials drawn with
    them are not graded (the faults, not the model, decide the outcome)."""


FAULT_SEEDS = 3
"""A fault task's reference is replayed under at least this many seeds (all trial seeds)."""


def trial_seed(task: Task, options: RunOptions, trial: int) -> int:
    """The seed of a task's trial: the faults' own seed, else the run's seed + trial."""
    if task.faults is not None and task.faults.seed is not None:
        return task.faults.seed
    return options.seed + trial


async def _outcome(
    loaded: LoadedSuite, world: BuiltWorld, task: Task, model: str, seed: int, guard: bool
) -> Outcome:
    sim = world.simulator(seed=seed, faults=task.faults)
    store = Store("sqlite://")
    try:
        if task.kind == "workflow":
            outcome = await run_workflow_task(
                task,
                sim,
                store=store,
                noop=model == "noop",
                guard=guard,
                llm=workflow_llm(model, task.reference),
            )
        else:
            if model.startswith("scripted:"):
                chat_model = task_model(model, task, world.fill)
            else:
                chat_model = make_model(model, task.reference)
            policy = loaded.policy_for(task)
            outcome = await run_chat(task, sim, chat_model, policy, guard=guard, store=store)
        outcome.faults = dict(sim.faults.counts) if sim.faults is not None else {}
        outcome.simulated_seconds = sim.clock.now() - world.start
        return outcome
    finally:
        await asyncio.to_thread(store.dispose)


async def run_trial(
    loaded: LoadedSuite,
    world: BuiltWorld,
    task: Task,
    *,
    model: str,
    seed: int,
    guard: bool,
    limit: float | None,
    seen: Callable[[Outcome], None] | None = None,
) -> dict[str, Any]:
    """One graded trial as the report stores it (``limit``: seconds, else the task's).

    ``seen`` is handed the finished trial's ``Outcome`` (states, answer, calls) before it
    is graded: the fault drill reads what the report does not keep.
    """
    started = time.perf_counter()
    out: dict[str, Any] = {"seed": seed, "passed": False}
    limit = limit or task.timeout
    try:
        async with asyncio.timeout(limit):
            outcome = await _outcome(loaded, world, task, model, seed, guard)
        if seen is not None:
            seen(outcome)
        grades = grade(task, outcome, diff, guarded=guard)
    except TimeoutError:
        out["error"] = f"timed out after {limit:g}s"
        out["failures"] = [out["error"]]
    except ModelError as exc:
        out["error"] = str(exc)
        out["failures"] = [f"model error: {exc}"]
    except Exception as exc:
        out["error"] = traceback.format_exc()
        out["failures"] = [f"crashed: {type(exc).__name__}: {exc}"]
    else:
        out.update(_graded(task, outcome, grades))
    out["wall_seconds"] = round(time.perf_counter() - started, 4)
    return out


def _graded(task: Task, outcome: Outcome, grades: list[Grade]) -> dict[str, Any]:
    by_name = {g.name: g for g in grades}
    guard = by_name["guard"].figures
    out: dict[str, Any] = {
        "passed": all(g.passed for g in grades),
        "failures": [f for g in grades for f in g.failures],
        "grades": {g.name: g.to_json() for g in grades},
        "violations": {k: guard[k] for k in ("attempted", "blocked", "through")},
        "changed": bool(diff(outcome.before, outcome.after)),
    }
    if task.attack is not None:
        out["attack_succeeded"] = guard["effects"] > 0
    if outcome.usage:
        out["usage"] = outcome.usage
    if outcome.notes:
        out["notes"] = outcome.notes
    if outcome.faults:
        out["faults"] = outcome.faults
    out["simulated_seconds"] = round(outcome.simulated_seconds, 3)
    return out


def resolve_task(task: Task, world: BuiltWorld) -> Task:
    """``task`` as ``run_trial`` needs it: templates filled and number facts computed on
    the world (an aggregate, a ``{{handle.field}}`` value, ``scale`` applied); raises
    ``CloseguardError``, ``ValidationError`` or ``ValueError`` when that cannot be done.
    Anything that hands tasks to ``run_trial`` resolves them here, so graders see the
    numbers the answer must state and not their recipes."""
    data = world.fill(task.model_dump(mode="json", exclude_unset=True))
    filled = Task.model_validate(data)
    facts = resolve_facts(list(filled.expect.answer), world.state["collections"])
    return filled.model_copy(update={"expect": filled.expect.model_copy(update={"answer": facts})})


def _resolve(run: TaskRun, world: BuiltWorld) -> None:
    """The task with its templates filled and its number facts computed on the world; a
    fact the filled instruction already states makes the task broken."""
    try:
        task = resolve_task(run.task, world)
    except (CloseguardError, ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        run.broken = f"{run.where}: cannot resolve the task: {first}"
        return
    facts = task.expect.answer
    copied = [s for _, s in copied_facts(task)]
    stated = numbers_in(task.instruction or "")
    copied += [
        f"{f.number:g}"
        for f in facts
        if isinstance(f, NumberFact) and isinstance(f.number, float) and f.number in stated
    ]
    if copied:
        run.broken = (
            f"{run.where}: answer fact {copied[0]!r} is in the instruction itself "
            "(an agent that repeats the question would pass it)"
        )
        return
    run.resolved = task


_VALIDATED: dict[tuple[str, str, int], dict[str, Any]] = {}
"""Reference replays already made in this process, by (suite file, resolved task, seed): a
benchmark running several models validates each task once."""


async def _replay(loaded: LoadedSuite, world: BuiltWorld, task: Task, seed: int) -> dict[str, Any]:
    """The reference's trial of ``task`` under ``seed`` (once per process)."""
    key = (str(loaded.file), task.model_dump_json(), seed)
    if key not in _VALIDATED:
        _VALIDATED[key] = await run_trial(
            loaded, world, task, model="reference", seed=seed, guard=True, limit=None
        )
    return _VALIDATED[key]


def _reasons(result: Mapping[str, Any]) -> str:
    return "; ".join(result.get("failures") or ["failed"])


async def _validate(
    run: TaskRun, loaded: LoadedSuite, world: BuiltWorld, options: RunOptions
) -> None:
    """Replay the reference on a fresh world (guarded); a failure marks the task broken.

    A task with faults is replayed without them first (a failure there is a broken task),
    then under every trial seed and at least ``FAULT_SEEDS`` seeds: a seed under which the
    reference fails is ``infeasible`` with the reason. The replays get the task's own
    timeout: ``--timeout`` bounds the model under test, and a short one must not make a
    sound task look broken."""
    task = run.resolved
    assert task is not None
    if task.faults is not None:
        clean = await _replay(loaded, world, task.model_copy(update={"faults": None}), 0)
        run.needs_change = bool(clean.get("changed"))
        if not clean["passed"]:
            run.broken = f"{run.where}: the reference solution does not pass: {_reasons(clean)}"
            run.replay = clean
            return
        count = max(options.trials, FAULT_SEEDS)
        for seed in sorted({trial_seed(task, options, t) for t in range(count)}):
            result = await _replay(loaded, world, task, seed)
            if not result["passed"]:
                run.infeasible[seed] = _reasons(result)
        run.replay = await _replay(loaded, world, task, trial_seed(task, options, 0))
        return
    result = await _replay(loaded, world, task, options.seed)
    if not result["passed"]:
        run.broken = f"{run.where}: the reference solution does not pass: {_reasons(result)}"
    run.needs_change = bool(result.get("changed"))
    run.replay = result


async def run_suites(
    suites: list[LoadedSuite],
    options: RunOptions,
    *,
    previous: Mapping[Key, dict[str, Any]] | None = None,
    on_trial: Callable[[TaskRun, int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    into: list[TaskRun] | None = None,
) -> list[TaskRun]:
    """Run everything; ``on_plan(n)`` is told how many trials will run, ``on_trial`` is
    called after each (the CLI saves the report and moves the progress bar there);
    ``into`` receives the task runs as soon as they exist, for partial reports."""
    previous = previous or {}
    gate = asyncio.Semaphore(max(1, options.concurrency))
    runs: list[TaskRun] = into if into is not None else []
    worlds: dict[str, tuple[LoadedSuite, BuiltWorld]] = {}
    for loaded in suites:
        world = await build_world(loaded)
        worlds[loaded.name] = (loaded, world)
        for task in loaded.suite.tasks:
            if not options.wants(loaded.name, task.id):
                continue
            run = TaskRun(loaded.name, task, loaded.where(task))
            _resolve(run, world)
            runs.append(run)

    async def validate(run: TaskRun) -> None:
        async with gate:
            await _validate(run, *worlds[run.suite], options)

    await asyncio.gather(*(validate(r) for r in runs if r.resolved is not None))
    todo: list[tuple[TaskRun, int]] = []
    for run in runs:
        if run.broken is not None:
            continue
        for t in range(options.trials):
            done = previous.get((run.suite, run.task.id, t))
            if done is not None:
                run.trials[t] = done
            else:
                todo.append((run, t))
    if on_plan is not None:
        on_plan(len(todo))

    async def one(run: TaskRun, t: int) -> None:
        async with gate:
            await play(run, t)

    async def play(run: TaskRun, t: int) -> None:
        loaded, world = worlds[run.suite]
        assert run.resolved is not None
        seed = trial_seed(run.resolved, options, t)
        if seed in run.infeasible:
            run.trials[t] = {"trial": t, "seed": seed, "infeasible": run.infeasible[seed]}
            if on_trial is not None:
                on_trial(run, t)
            return
        if t == 0 and run.replay is not None and options.model == "reference" and options.guard:
            run.trials[t] = {"trial": t, **run.replay}
            if on_trial is not None:
                on_trial(run, t)
            return
        result = await run_trial(
            loaded,
            world,
            run.resolved,
            model=options.model,
            seed=seed,
            guard=options.guard,
            limit=options.timeout,
        )
        run.trials[t] = {"trial": t, **result}
        if on_trial is not None:
            on_trial(run, t)

    await asyncio.gather(*(one(r, t) for r, t in todo))
    return runs
