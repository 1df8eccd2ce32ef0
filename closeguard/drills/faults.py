"""The fault matrix: every ``sales-ops`` and ``workflows`` eval task (so every packaged
workflow) replayed with its reference solution under each simulator fault profile.

A trial that passes its graders completed with exactly the expected end state. A failed
state check ``expected N, found M`` is counted as lost (M < N) or duplicated (M > N)
effects, a field left unchanged (``is_complete is False, expected True``) as lost; any
other failure (a crash, a timeout, a wrong answer) as ``other``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from closeguard.evals.format import Delivery, Faults, Task
from closeguard.evals.loader import LoadedSuite, find_suites
from closeguard.evals.runner import run_trial
from closeguard.evals.world import BuiltWorld, build_world
from closeguard.simulator.faults import HTTPFaults

__all__ = ["PROFILES", "FaultFigures", "Profile", "fault_matrix"]

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

_COUNT = re.compile(r"expected (\d+|none), found (\d+)")
_FIELD = re.compile(r"^\w+ \S+: \w+ is .*, expected ")


@dataclass
class FaultFigures:
    """One profile's totals over every task and seed."""

    profile: str
    tried: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    other: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, where: str, result: dict[str, Any]) -> None:
        self.tried += 1
        if result["passed"]:
            self.completed += 1
            return
        kinds = set()
        for failure in result.get("failures") or ["failed"]:
            match = _COUNT.search(failure)
            if match is None:
                kinds.add("lost" if _FIELD.search(failure) else "other")
                continue
            want = 0 if match[1] == "none" else int(match[1])
            kinds.add("lost" if int(match[2]) < want else "duplicated")
        self.lost += "lost" in kinds
        self.duplicated += "duplicated" in kinds
        self.other += kinds == {"other"}
        first = (result.get("failures") or ["failed"])[0].splitlines()[0]
        self.failures.append(f"{where} seed {result['seed']}: {first[:200]}")


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
    data = (world.fill(t.model_dump(mode="json", exclude_unset=True)) for t in loaded.suite.tasks)
    return [Task.model_validate(d) for d in data]


async def fault_matrix(
    profiles: Iterable[str] = PROFILES,
    *,
    suites: Iterable[str] = ("sales-ops", "workflows"),
    seeds: int = 1,
    concurrency: int = 4,
    limit: float = 120.0,
) -> list[FaultFigures]:
    """Run the matrix; one ``FaultFigures`` per profile, in the order given."""
    loaded = find_suites(list(suites))
    worlds = [(s, await build_world(s)) for s in loaded]
    tasks = [(s, w, t) for s, w in worlds for t in await _resolved(s, w)]
    gate = asyncio.Semaphore(max(1, concurrency))
    figures = [FaultFigures(name) for name in profiles]

    async def one(
        fig: FaultFigures, suite: LoadedSuite, world: BuiltWorld, task: Task, seed: int
    ) -> None:
        async with gate:
            result = await run_trial(
                suite, world, task, model="reference", seed=seed, guard=True, limit=limit
            )
        fig.add(f"{suite.name}/{task.id}", result)

    jobs: list[Coroutine[Any, Any, None]] = []
    for fig in figures:
        profile = PROFILES[fig.profile]
        for suite, world, task in tasks:
            faulted = _apply(task, profile)
            if faulted is not None:
                jobs.extend(one(fig, suite, world, faulted, seed) for seed in range(seeds))
    await asyncio.gather(*jobs)
    return figures
