"""The fault matrix: every ``sales-ops`` and ``workflows`` eval task (so every packaged
workflow) replayed with its reference solution under each simulator fault profile.

Faults apply to what the agent or the workflow does, never to the task's ``setup`` (the
eval rig makes those edits fault-free). Each trial lands in exactly one category, read
from what each grader's failure means (``closeguard/evals/graders``), the final answer
and the runs:

- ``completed``: every grader passed, so exactly the expected end state.
- ``duplicated``: a count check found more than the task makes (``expected 1, found 2``).
- ``unwanted``: a change the task must not make (an ``exists: false`` check that held at
  the start but not at the end, an unexpected change, a forbidden effect).
- ``dead``: a workflow run ran out of attempts on transient failures and is dead-lettered
  with its error, in ``closeguard runs list`` and retriable with ``closeguard runs retry``;
  the rest of its effects are missing, nothing is doubled.
- ``refused_to_guess``: a chat write that Close failed (5xx, no answer) and that the client
  would not resend blind (its outcome is unknown); the effect is missing, nothing is
  doubled, and the agent's answer tells the user so.
- ``lost``: an effect missing with none of the above to account for it (``expected 1, found
  0``, ``not found``, a field left as it was, an ``exists: false`` check whose objects were
  there at the start and still are, or the task's call never succeeding).
- ``other``: a crash, a timeout, a wrong answer alone.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from closeguard.evals.format import Delivery, Faults, Task
from closeguard.evals.graders import Trial, grade_state
from closeguard.evals.loader import LoadedSuite, find_suites
from closeguard.evals.runner import resolve_task, run_trial
from closeguard.evals.trial import Outcome
from closeguard.evals.world import BuiltWorld, build_world
from closeguard.simulator.faults import HTTPFaults
from closeguard.simulator.hashing import diff
from closeguard.tools.catalog import BY_NAME

__all__ = ["PROFILES", "Evidence", "FaultFigures", "Profile", "failure_kind", "fault_matrix"]

Reorder = Callable[[list[int]], list[int]]


@dataclass(frozen=True)
class Profile:
    """One row of the matrix: API faults on every group and/or a delivery transform."""

    http: HTTPFaults | None = None
    deliveries: Reorder | None = None


def _duplicate(order: list[int]) -> list[int]:
    return [i for i in order for _ in (0, 1)]


def _reverse(order: list[int]) -> list[int]:
    return list(reversed(order))


def _late_first(order: list[int]) -> list[int]:
    """The first delivery held back (a 10-minute delay) until after all the others."""
    return order[1:] + order[:1]


def _drop_all(order: list[int]) -> list[int]:
    return []


PROFILES: dict[str, Profile] = {
    "none": Profile(),
    "429-storm": Profile(HTTPFaults(error_429=0.5)),
    "5xx-5%": Profile(HTTPFaults(error_500=0.02, error_502=0.015, error_503=0.015)),
    "5xx-30%": Profile(HTTPFaults(error_500=0.1, error_502=0.1, error_503=0.1)),
    "latency-2s": Profile(HTTPFaults(latency_ms=2000)),
    "dropped-5%": Profile(HTTPFaults(drop=0.05)),
    "webhook-duplicates": Profile(deliveries=_duplicate),
    "webhook-reordered": Profile(deliveries=_reverse),
    "webhook-delayed-10min": Profile(deliveries=_late_first),
    "webhook-dropped": Profile(deliveries=_drop_all),
}

_COUNT = re.compile(r"^(.*): expected (\d+|none), found (\d+)$")
_FIELD = re.compile(r"^\w+ \S+: [\w.]+ is .*, expected ")
_UNWANTED = ("expected no change", "unexpected change:", "forbidden effect happened")
_TOLD = re.compile(r"(?i)\b(?:could not|couldn't|cannot|failed|not done|did not|didn't|unable)\b")
"""An answer that says something was not done (for ``refused_to_guess``)."""
_DEAD = ": dead ("
"""How the workflow trial notes a dead-lettered run (``run ID: dead (error)``)."""


@dataclass(frozen=True)
class Evidence:
    """What a trial's report does not keep and its classification needs."""

    answer: str = ""
    failed_writes: tuple[str, ...] = ()
    """Writes that went to Close and got a 5xx or no answer (endpoint names)."""
    present_at_start: frozenset[str] = frozenset()
    """``exists: false`` checks (as the state grader names them) that already matched
    objects at the start: the task had to clear those, so a miss is a lost effect."""

    @classmethod
    def of(cls, task: Task, outcome: Outcome) -> Evidence:
        failed = tuple(
            a.endpoint
            for a in outcome.actions
            if a.endpoint in BY_NAME
            and BY_NAME[a.endpoint].method != "GET"
            and not a.blocked
            and (a.status is None or a.status >= 500)
        )
        start = Trial(before=outcome.before, after=outcome.before, diff=diff({}, {}))
        present = frozenset(
            m[1]
            for f in grade_state(
                start, task.expect.model_copy(update={"unchanged": False})
            ).failures
            if (m := _COUNT.match(f)) is not None and m[2] == "none"
        )
        return cls(outcome.answer, failed, present)


def failure_kind(failure: str, evidence: Evidence | None = None) -> str:
    """What one grader failure means: lost, duplicated, unwanted, answer or other."""
    line = failure.splitlines()[0] if failure else ""
    count = _COUNT.match(line)
    if count is not None:
        found = int(count[3])
        if count[2] == "none":
            present = evidence.present_at_start if evidence is not None else frozenset()
            return "lost" if count[1] in present else "unwanted"
        return "lost" if found < int(count[2]) else "duplicated"
    if line.endswith(": not found") or _FIELD.match(line) or "never called successfully" in line:
        return "lost"
    if line.startswith(_UNWANTED) or "got through the guard" in line:
        return "unwanted"
    if line.startswith("the answer does not say"):
        return "answer"
    return "other"


@dataclass
class FaultFigures:
    """One profile's totals over every task and seed; each trial counts in exactly one
    category (see the module's docstring), so they add up to ``tried``."""

    profile: str
    tried: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    unwanted: int = 0
    dead: int = 0
    refused_to_guess: int = 0
    other: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def add(self, where: str, result: dict[str, Any], evidence: Evidence | None = None) -> None:
        self.tried += 1
        if result["passed"]:
            self.completed += 1
            return
        failures = result.get("failures") or ["failed"]
        kinds = {failure_kind(f, evidence) for f in failures}
        dead = [n for n in result.get("notes") or [] if _DEAD in n]
        category = _category(kinds, dead, evidence)
        setattr(self, category, getattr(self, category) + 1)
        detail = dead[0] if category == "dead" else failures[0].splitlines()[0]
        if category == "refused_to_guess" and evidence is not None:
            detail = f"{detail}; answer: {evidence.answer}"
        self.failures.append(f"{category}: {where} seed {result['seed']}: {detail[:300]}")


def _category(kinds: set[str], dead: list[str], evidence: Evidence | None) -> str:
    for worst in ("duplicated", "unwanted"):
        if worst in kinds:
            return worst
    if dead and kinds <= {"lost"}:
        return "dead"
    if (
        evidence is not None
        and evidence.failed_writes
        and kinds <= {"lost", "answer"}
        and _TOLD.search(evidence.answer)
    ):
        return "refused_to_guess"
    return "lost" if "lost" in kinds else "other"


def _apply(task: Task, profile: Profile) -> Task | None:
    """``task`` under ``profile``, or None when the profile does not apply to it."""
    if profile.deliveries is not None:
        if task.deliveries is None or not task.deliveries.order:
            return None
        order = profile.deliveries(list(task.deliveries.order))
        deliveries = Delivery(order=order, catch_up=True)
        return task.model_copy(update={"deliveries": deliveries})
    if profile.http is None:
        return task
    return task.model_copy(update={"faults": Faults(http={"*": profile.http})})


async def _resolved(loaded: LoadedSuite, world: BuiltWorld) -> list[Task]:
    """The suite's tasks resolved as the eval runner resolves them (``resolve_task``):
    templates filled and number facts computed, else the answer grader has no number to
    compare."""
    return [resolve_task(t, world) for t in loaded.suite.tasks]


async def fault_matrix(
    profiles: Iterable[str] = PROFILES,
    *,
    suites: Iterable[str] = ("sales-ops", "workflows"),
    seeds: int = 1,
    concurrency: int = 4,
    limit: float = 120.0,
) -> list[FaultFigures]:
    """Run the matrix; one ``FaultFigures`` per profile, in the order given. Profiles run
    one after another (their trials ``concurrency`` at a time), so each has its own wall
    time."""
    loaded = find_suites(list(suites))
    worlds = [(s, await build_world(s)) for s in loaded]
    tasks = [(s, w, t) for s, w in worlds for t in await _resolved(s, w)]
    gate = asyncio.Semaphore(max(1, concurrency))
    figures = [FaultFigures(name) for name in profiles]

    async def one(
        fig: FaultFigures, suite: LoadedSuite, world: BuiltWorld, task: Task, seed: int
    ) -> None:
        seen: list[Evidence] = []
        async with gate:
            result = await run_trial(
                suite,
                world,
                task,
                model="reference",
                seed=seed,
                guard=True,
                limit=limit,
                seen=lambda outcome: seen.append(Evidence.of(task, outcome)),
            )
        fig.add(f"{suite.name}/{task.id}", result, seen[0] if seen else None)

    for fig in figures:
        profile = PROFILES[fig.profile]
        jobs: list[Coroutine[Any, Any, None]] = []
        for suite, world, task in tasks:
            faulted = _apply(task, profile)
            if faulted is not None:
                jobs.extend(one(fig, suite, world, faulted, seed) for seed in range(seeds))
        started = time.perf_counter()
        await asyncio.gather(*jobs)
        fig.seconds = round(time.perf_counter() - started, 1)
    return figures
