"""What the packaged-workflow tests share: a simulated org on fake time, real events, runs.

Events are the simulator's own Event Log entries for something done through the API (the
very dicts a webhook delivery or Event Log catch-up would hand the runtime), and each run
goes through ``run_workflow``: the executor, the workflow's shipped policy, the journal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from closeguard.simulator import Simulator
from closeguard.simulator.hashing import Snapshot, StateDiff
from closeguard.store import Store
from closeguard.tools import CloseClient, FakeClock
from closeguard.workflows import Workflow
from closeguard.workflows.rules import rule_workflows
from closeguard.workflows.testing import RunResult, resume_workflow, run_workflow

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # a Thursday
EVENT_LOG_ONLY = ("activities",)  # where Close logs its own status-change activities


@dataclass
class Org:
    """A seeded simulator on a fake clock, with a store for runs."""

    store: Store
    seed: int = 1
    leads: int = 20
    sim: Simulator = field(init=False)

    def __post_init__(self) -> None:
        self.clock = FakeClock(NOW.timestamp())
        self.sim = Simulator(seed=self.seed, leads=self.leads, clock=self.clock)

    def client(self) -> CloseClient:
        return self.sim.client()

    async def act(self, action: Callable[[CloseClient], Awaitable[Any]]) -> list[dict[str, Any]]:
        """Do ``action`` as a person would (unguarded), return the events it caused."""
        seen = len(self.sim.events)
        async with self.client() as close:
            await action(close)
        return [dict(e) for e in self.sim.events[seen:]]

    async def run(self, workflow: Workflow, **kwargs: Any) -> RunResult:
        return await run_workflow(
            workflow,
            transport=self.sim.transport(),
            api_key=self.sim.api_key,
            store=self.store,
            clock=self.clock,
            **kwargs,
        )

    async def resume(self, workflow: Workflow, waiting: RunResult, **kwargs: Any) -> RunResult:
        return await resume_workflow(
            workflow,
            waiting,
            transport=self.sim.transport(),
            api_key=self.sim.api_key,
            store=self.store,
            clock=self.clock,
            **kwargs,
        )

    def snapshot(self) -> Snapshot:
        return self.sim.snapshot()

    def diff(self, before: Snapshot) -> StateDiff:
        return self.sim.diff(before)

    def first(self, collection: str, **match: Any) -> dict[str, Any]:
        return next(o for o in self.sim.state[collection].values() if _has(o, match))

    def all(self, collection: str, **match: Any) -> list[dict[str, Any]]:
        return [o for o in self.sim.state[collection].values() if _has(o, match)]

    def get(self, collection: str, oid: str) -> dict[str, Any]:
        return dict(self.sim.state[collection][oid])

    def status_id(self, label: str, collection: str = "opportunity_statuses") -> str:
        return str(self.first(collection, label=label)["id"])


def _has(obj: dict[str, Any], match: dict[str, Any]) -> bool:
    return all(obj.get(k) == v for k, v in match.items())


def event(events: list[dict[str, Any]], object_type: str, action: str) -> dict[str, Any]:
    return next(e for e in events if e["object_type"] == object_type and e["action"] == action)


def added(diff: StateDiff, collection: str) -> list[str]:
    return [c.id for c in diff.added if c.collection == collection]


def collections(diff: StateDiff) -> dict[str, str]:
    """Every object the diff touches, as id -> "+collection" / "-collection" / "~collection"."""
    out = {c.id: f"+{c.collection}" for c in diff.added}
    out.update({c.id: f"-{c.collection}" for c in diff.removed})
    out.update({c.id: f"~{c.collection}" for c in diff.changed})
    return out


RULES = Path(__file__).resolve().parents[1] / "closeguard" / "workflows" / "library" / "rules"


def rule_form(name: str) -> Workflow:
    """The packaged rule file ``name``.yaml, loaded as the runtime loads it."""
    [(workflow, _)] = rule_workflows(RULES / f"{name}.yaml")
    return workflow
