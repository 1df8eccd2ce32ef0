"""Close API calls per run of every packaged workflow, against each one's floor.

Close's rate limit is shared by the whole organization, so every call a workflow makes
that it does not need is taken from every other process. This bench runs each packaged
workflow ``runs`` times in one process (one executor, as ``closeguard run`` has), each run
on a fresh trigger in a simulated organization, counts the requests that reached the
simulator during the runs (not while the scenario was set up), and prints calls per run
beside its target with PASS or FAIL.

Organization facts (the key's user, members, statuses, custom fields) are read once per
process: each workflow's first run (a warm-up, not counted) pays them, and the line says
how many such one-time reads it made.

Targets are the floor of what each job needs: its writes, plus the reads that check its
own earlier write (the once-only read-backs) and the reads that find its work (a schedule's
scan). For ``new-lead-triage``: its two writes plus at most one read.

    .venv/bin/python bench/calls.py            # 20 runs per workflow
    .venv/bin/python bench/calls.py --quick    # 5 runs per workflow (under a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.agent.models import AgentInfo, FunctionChatModel
from closeguard.guardrails import Approvals
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools import CloseClient, FakeClock
from closeguard.workflows import Workflow, packaged_workflows
from closeguard.workflows.executor import Executor, RunSpec
from closeguard.workflows.testing import SIM_BASE_URL

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@dataclass
class Trigger:
    """One run's trigger, and the calls its job needs at the least."""

    floor: int | Callable[[dict[str, Any]], int]
    """The least calls the run needs; a function of the run's final state when it depends
    on what the run found (a schedule's scan)."""
    event: dict[str, Any] | None = None
    tick: datetime | None = None
    params: dict[str, Any] | None = None
    lead_id: str | None = None


Scenario = Callable[["Bench", int], Awaitable[Trigger]]


class Bench:
    """A simulated organization on a fake clock and one executor for every run."""

    def __init__(self, folder: Path, leads: int) -> None:
        self.clock = FakeClock(NOW.timestamp())
        self.sim = Simulator(seed=3, leads=leads, clock=self.clock)
        self.store = Store(f"sqlite:///{folder / 'store.db'}")
        self.llm = FunctionChatModel(fn=_answer)
        self.executor = Executor(
            store=self.store,
            checkpointer=InMemorySaver(),
            api_key=self.sim.api_key,
            transport=self.sim.transport(),
            base_url=SIM_BASE_URL,
            clock=self.clock,
            llm=self.llm,
        )

    async def act(self, action: Callable[[CloseClient], Awaitable[Any]]) -> list[dict[str, Any]]:
        seen = len(self.sim.events)
        async with self.sim.client() as close:
            await action(close)
        return [dict(e) for e in self.sim.events[seen:]]

    async def run(self, workflow: Workflow, trigger: Trigger, index: int) -> tuple[int, int]:
        """Execute one run to its end (approving what it asks): the calls it made, and the
        least it needed."""
        spec = RunSpec(
            run_id=f"run_{workflow.name}_{index}",
            workflow=workflow.name,
            event=trigger.event,
            tick=trigger.tick,
            params=trigger.params or {},
            lead_id=trigger.lead_id or workflow.lead_for(trigger.event),
        )
        before = self.sim.request_count["total"]
        outcome = await self.executor.execute(workflow, spec)
        while outcome.status == "waiting_approval":
            assert outcome.approval_id is not None
            Approvals(self.store).approve(outcome.approval_id, by="bench")
            answer = {"approval_id": outcome.approval_id, "status": "approved"}
            outcome = await self.executor.execute(workflow, spec, resume=answer)
        if outcome.status != "completed":
            raise RuntimeError(f"{workflow.name} run {index}: {outcome.status} {outcome.error}")
        calls = self.sim.request_count["total"] - before
        floor = trigger.floor
        return calls, floor if isinstance(floor, int) else floor(outcome.state)


def _answer(messages: list[BaseMessage], info: AgentInfo) -> str:
    return '{"summary": "They want pricing.", "next_step": "Send pricing"}'


def _event(events: list[dict[str, Any]], object_type: str, action: str) -> dict[str, Any]:
    return next(e for e in events if e["object_type"] == object_type and e["action"] == action)


def _status(bench: Bench, collection: str, **match: Any) -> str:
    return next(
        str(s["id"])
        for s in bench.sim.state[collection].values()
        if all(s.get(k) == v for k, v in match.items())
    )


async def triage(bench: Bench, index: int) -> Trigger:
    if index == 0:
        await bench.act(
            lambda c: c.custom_fields.lead.create({"name": "Lead Owner", "type": "user"})
        )
    body = {"name": f"Bench lead {index}", "contacts": [{"name": "Ada"}]}
    events = await bench.act(lambda c: c.leads.create(body))
    # two writes (owner field, intro task) and the read-back of the task
    return Trigger(3, event=_event(events, "lead", "created"))


def _active_opportunity(bench: Bench, index: int) -> dict[str, Any]:
    active = sorted(
        (o for o in bench.sim.state["opportunities"].values() if o["status_type"] == "active"),
        key=lambda o: str(o["id"]),
    )
    return dict(active[index % len(active)])


async def follow_up(bench: Bench, index: int) -> Trigger:
    opp = _active_opportunity(bench, index)
    lost = _status(bench, "opportunity_statuses", type="lost")
    events = await bench.act(lambda c: c.opportunities.update(opp["id"], {"status_id": lost}))
    # the task and its read-back
    return Trigger(2, event=_event(events, "opportunity", "updated"))


async def handoff(bench: Bench, index: int) -> Trigger:
    opp = _active_opportunity(bench, index)
    won = _status(bench, "opportunity_statuses", type="won")
    events = await bench.act(lambda c: c.opportunities.update(opp["id"], {"status_id": won}))
    # three writes (status, note, task), the read-backs of the note and the task
    return Trigger(5, event=_event(events, "opportunity", "updated"))


async def call_summary(bench: Bench, index: int) -> Trigger:
    lead_id = sorted(bench.sim.state["leads"])[index]
    events = await bench.act(
        lambda c: c.calls.create({"lead_id": lead_id, "note": f"Call {index}: pricing"})
    )
    # the note's read-back (before asking the model), the note, the task and its read-back
    return Trigger(4, event=_event(events, "activity.call", "created"))


async def merge(bench: Bench, index: int) -> Trigger:
    email = f"dup{index}@bench.example"
    for name in (f"Original {index}", f"Duplicate {index}"):
        body = {"name": name, "contacts": [{"name": "Bo", "emails": [{"email": email}]}]}
        events = await bench.act(lambda c, body=body: c.leads.create(body))
        bench.clock.advance(1)
    # the new lead, the search for its email, the merge and its read-back, and the
    # destination's tasks (to keep one open intro call task)
    return Trigger(5, event=_event(events, "lead", "created"))


def _pages(objects: int, size: int = 100) -> int:
    return max(1, -(-objects // size))


async def stale(bench: Bench, index: int) -> Trigger:
    active = [o for o in bench.sim.state["opportunities"].values() if o["status_type"] == "active"]
    tick = NOW + timedelta(days=30 + index)
    writes = index == 0
    # the scan (the active opportunities, one activity read per quiet one's lead), and per
    # stale opportunity the read-back of its nudge (and the nudge, the first time)
    return Trigger(
        lambda state: _pages(len(active)) + len(active) + (1 + writes) * len(state["stale"]),
        tick=tick,
    )


async def digest(bench: Bench, index: int) -> Trigger:
    tick = NOW + timedelta(days=60 + index)
    # the overdue tasks, and per user with some the day's draft and its read-back
    return Trigger(
        lambda state: (
            _pages(sum(len(tasks) for tasks in state["digests"].values()))
            + 2 * len(state["digests"])
        ),
        tick=tick,
    )


async def offboarding(bench: Bench, index: int) -> Trigger:
    users = sorted(bench.sim.state["users"])
    source, target = users[index % len(users)], users[(index + 1) % len(users)]
    # the open tasks, the active opportunities, the owned leads (with an owner field), the
    # bulk move of the tasks, and per opportunity and lead one write (a read-back only
    # on a retry)
    return Trigger(
        lambda state: (
            _pages(state["tasks"])
            + _pages(len(state["opportunities"]))
            + (_pages(len(state["leads"])) if state.get("owner_field") else 0)
            + 1
            + len(state["opportunities"])
            + len(state["leads"])
        ),
        params={"from_user": source, "to_user": target},
    )


SCENARIOS: dict[str, Scenario] = {
    "follow-up-on-status-change": follow_up,
    "new-lead-triage": triage,
    "stale-opportunity-nudge": stale,
    "overdue-task-digest": digest,
    "won-deal-handoff": handoff,
    "call-summary": call_summary,
    "duplicate-lead-merge": merge,
    "rep-offboarding": offboarding,
}


async def measure(runs: int) -> list[tuple[str, float, float, int]]:
    """(workflow, calls per run, target per run, the warm-up run's calls over its floor)
    for every packaged workflow."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="closeguard-calls-") as folder:
        bench = Bench(Path(folder), leads=max(30, 4 * runs))
        try:
            for name, workflow in packaged_workflows().items():
                calls = floor = 0
                for index in range(runs + 1):
                    trigger = await SCENARIOS[name](bench, index)
                    made, least = await bench.run(workflow, trigger, index)
                    bench.clock.advance(1)
                    if index == 0:
                        warmup = made - least
                        continue
                    calls += made
                    floor += least
                rows.append((name, calls / runs, floor / runs, warmup))
        finally:
            bench.store.dispose()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs per workflow")
    parser.add_argument("--runs", type=int, default=20, help="runs per workflow (default 20)")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else args.runs
    rows = asyncio.run(measure(runs))
    print(
        f"calls per run, {runs} runs per workflow after one warm-up run, one process "
        "(simulated organization)"
    )
    failed = 0
    for name, calls, target, warmup in rows:
        ok = calls <= target + 1e-9
        failed += not ok
        verdict = "PASS" if ok else "FAIL"
        print(
            f"{name:28} {calls:6.2f} calls/run   target <= {target:6.2f}   {verdict}"
            f"   (first run: {warmup:+d} over its floor)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
