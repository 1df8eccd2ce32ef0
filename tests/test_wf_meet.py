"""Packaged workflows that meet on one event or one lead: every pair that shares a trigger,
in every order the queue allows, ends with each one's work done once.

- ``new-lead-triage`` and ``duplicate-lead-merge`` (``lead.created``): a new lead that
  duplicates an older one gets its intro call task and is merged into the older lead;
  whichever way their runs interleave (and whether the older lead's own runs come first or
  late), the surviving lead has exactly one open intro call task.
- ``follow-up-on-status-change`` and ``won-deal-handoff`` (a won deal's
  ``opportunity.updated``): each writes its own records once, in either order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from closeguard.store import Store
from closeguard.workflows.worker import Worker
from tests._pg import schema_store
from tests._wf_crm import Crm, of

TRIAGE, MERGE = "new-lead-triage", "duplicate-lead-merge"
FOLLOW_UP, HANDOFF = "follow-up-on-status-change", "won-deal-handoff"


class Stage:
    """A CRM where lead A exists and lead B duplicates it (same name, same email), each
    with its runs queued, and steps to execute one chosen run at a time."""

    def __init__(self, store: Store, names: tuple[str, ...]) -> None:
        self.crm = Crm(store, *names, leads=2)
        [self.worker] = self.crm.workers(1)
        self.seen = len(self.crm.sim.events)
        self.keys: dict[str, tuple[str, str]] = {}

    async def lead(self, label: str) -> str:
        body = {
            "name": "Acme Widgets",
            "contacts": [{"name": "Bo", "emails": [{"email": "bo@acme.test"}]}],
        }
        events = await self.crm.act(lambda c: c.leads.create(body))
        self.crm.clock.advance(1)
        created = of(events, "lead", "created")
        await self.deliver()
        for name in self.crm.workflows:
            self.keys[f"{name}:{label}"] = (name, created["id"])
        return str(created["object_id"])

    async def deliver(self) -> None:
        """What Close did since the last delivery reaches the inbox, as webhooks would."""
        events = [dict(e) for e in self.crm.sim.events[self.seen :]]
        self.seen += len(events)
        if events:
            await self.crm.deliver(events)

    async def step(self, name: str) -> bool:
        """Execute that run now (a parked one approved first); False if the queue would
        not let it run now (an earlier run of its lead is unfinished)."""
        run = await self.crm.store.run(self.crm.queue.rows.by_trigger, *self.keys[name])
        assert run is not None
        if run.status == "waiting_approval":
            for pending in self.crm.approvals.list("pending"):
                self.crm.approvals.approve(pending.id, by="person")
            await self.worker.check_approvals()
        claimed = await self.crm.queue.claim_run(run.id, self.worker.name)
        if claimed is None:
            return False
        await self.worker.execute(claimed)
        await self.deliver()
        return True


def intro_tasks(crm: Crm, lead_id: str) -> list[dict[str, Any]]:
    return [t for t in crm.tasks(lead_id) if str(t["text"]).startswith("Intro call:")]


def orders() -> Iterator[tuple[str, ...]]:
    """Every order of A's two runs, B's triage and B's merge (asked, then done)."""
    steps = (f"{TRIAGE}:A", f"{MERGE}:A", f"{TRIAGE}:B", f"{MERGE}:B", f"{MERGE}:B")
    yield from sorted(set(itertools.permutations(steps)))


@pytest.mark.parametrize(
    "names", [(TRIAGE, MERGE), (MERGE, TRIAGE)], ids=["triage-first", "merge-first"]
)
async def test_triage_and_merge_in_every_order_leave_one_open_intro_call(
    tmp_path: Any, names: tuple[str, ...]
) -> None:
    ran = 0
    for index, order in enumerate(orders()):
        store = Store(f"sqlite:///{tmp_path / f'{index}.db'}")
        try:
            stage = Stage(store, names)
            older = await stage.lead("A")
            newer = await stage.lead("B")
            for name in order:
                if not await stage.step(name):
                    break  # the queue never runs them in this order
            else:
                ran += 1
                crm = stage.crm
                runs = await crm.runs()
                assert {r.status for r in runs} == {"completed"}, (order, [r.error for r in runs])
                assert newer not in crm.sim.state["leads"], order
                assert len(intro_tasks(crm, older)) == 1, order
        finally:
            store.dispose()
    assert ran >= 6  # orders the queue allows, each checked


async def crowd(crm: Crm, pairs: int) -> list[tuple[str, str]]:
    """``pairs`` leads each with a newer duplicate (same name and email), all created at
    once and delivered together: every run queued before any executes."""
    events: list[dict[str, Any]] = []
    made: list[tuple[str, str]] = []
    for i in range(pairs):
        ids = []
        for _ in range(2):
            body = {
                "name": f"Dup {i}",
                "contacts": [{"name": "X", "emails": [{"email": f"x{i}@d.test"}]}],
            }
            caused = await crm.act(lambda c, body=body: c.leads.create(body))
            crm.clock.advance(1)
            events += caused
            ids.append(str(of(caused, "lead", "created")["object_id"]))
        made.append((ids[0], ids[1]))
    await crm.deliver(events)
    return made


async def drain_delivering(crm: Crm, workers: list[Worker]) -> None:
    """Drain, delivering what the runs did (the merges' events) as webhooks would."""
    seen = len(crm.sim.events)
    for _ in range(10):
        await crm.drain(workers)
        fresh = [dict(e) for e in crm.sim.events[seen:]]
        seen += len(fresh)
        if not fresh:
            return
        await crm.deliver(fresh)


def check_one_intro_each(crm: Crm, made: list[tuple[str, str]]) -> None:
    for older, newer in made:
        assert newer not in crm.sim.state["leads"]
        assert len(intro_tasks(crm, older)) == 1, older


async def test_duplicates_with_one_worker(store: Store) -> None:
    crm = Crm(store, TRIAGE, MERGE, leads=2)
    made = await crowd(crm, 4)
    await drain_delivering(crm, crm.workers(1))
    runs = await crm.runs()
    assert {r.status for r in runs} == {"completed"}, [r.error for r in runs]
    check_one_intro_each(crm, made)


async def test_duplicates_with_four_workers_on_postgresql() -> None:
    with schema_store("cg_meet_") as store:
        crm = Crm(store, TRIAGE, MERGE, leads=2)
        made = await crowd(crm, 6)
        await drain_delivering(crm, crm.workers(4))
        runs = await crm.runs()
        assert {r.status for r in runs} == {"completed"}, [r.error for r in runs]
        check_one_intro_each(crm, made)


@pytest.mark.parametrize(
    "names", [(FOLLOW_UP, HANDOFF), (HANDOFF, FOLLOW_UP)], ids=["follow-up-first", "handoff-first"]
)
async def test_a_won_deal_gets_one_follow_up_and_one_handoff_in_either_order(
    store: Store, names: tuple[str, ...]
) -> None:
    crm = Crm(store, *names, leads=6)
    opp = next(o for o in crm.sim.state["opportunities"].values() if o["status_type"] == "active")
    won = next(
        s["id"] for s in crm.sim.state["opportunity_statuses"].values() if s["type"] == "won"
    )
    events = await crm.act(lambda c: c.opportunities.update(opp["id"], {"status_id": won}))
    await crm.deliver(events)
    await crm.deliver(events)  # delivered twice: still one run each

    await crm.drain()

    runs = await crm.runs()
    assert sorted(r.workflow for r in runs) == sorted(names)
    assert {r.status for r in runs} == {"completed"}, [r.error for r in runs]
    texts = [str(t["text"]) for t in crm.tasks(opp["lead_id"])]
    assert sum(t.startswith("Won ") and opp["id"] in t for t in texts) == 1
    assert sum(t.startswith("Onboarding kickoff") and opp["id"] in t for t in texts) == 1
    notes = [
        a
        for a in crm.sim.state["activities"].values()
        if a["lead_id"] == opp["lead_id"]
        and str(a.get("note") or "").startswith(f"Handoff: deal {opp['id']}")
    ]
    assert len(notes) == 1
