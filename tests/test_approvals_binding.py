"""An approval binds the exact call to the actor and the policy that asked for it: a person
who approved one agent's call approved no other agent's identical call."""

from __future__ import annotations

import pytest

from closeguard.guardrails import Approvals, AuditLog, Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.errors import ApprovalRequired

POLICY = {"grants": {"task": "write", "lead": "read"}, "approve": ["task.create"]}


async def _ask(sim: Simulator, store: Store, actor: str, name: str, lead: str) -> str:
    guarded = Guarded(Policy.from_dict({"name": name, **POLICY}), store=store)
    async with sim.client(policy=guarded, actor=actor) as client:
        with pytest.raises(ApprovalRequired) as asked:
            await client.tasks.create({"lead_id": lead, "text": "call them"})
    return asked.value.approval_id


async def _try(sim: Simulator, store: Store, actor: str, name: str, lead: str) -> None:
    guarded = Guarded(Policy.from_dict({"name": name, **POLICY}), store=store)
    async with sim.client(policy=guarded, actor=actor) as client:
        await client.tasks.create({"lead_id": lead, "text": "call them"})


async def test_an_approval_is_used_only_by_its_actor_under_its_policy(store: Store) -> None:
    sim = Simulator(seed=2, leads=1)
    lead = next(iter(sim.state["leads"]))
    approvals = Approvals(store)
    alice = await _ask(sim, store, "alice-bot", "a", lead)
    approvals.approve(alice, by="manager")

    other_actor = await _ask(sim, store, "mallory-bot", "a", lead)
    other_policy = await _ask(sim, store, "alice-bot", "b", lead)
    assert len({alice, other_actor, other_policy}) == 3, "each asks a person on its own"
    assert approvals.get(alice).status == "approved", "nobody else used alice's approval"
    assert not sim.state["tasks"] or all(
        t["text"] != "call them" for t in sim.state["tasks"].values()
    )

    await _try(sim, store, "alice-bot", "a", lead)
    assert approvals.get(alice).status == "consumed"
    assert sum(t["text"] == "call them" for t in sim.state["tasks"].values()) == 1
    rows = list(AuditLog(store).rows())
    assert [
        r["actor"] for r in rows if r["decision"] == "approved" and r["method"] != "DECIDE"
    ] == ["alice-bot"]
    assert [(r["actor"], r["approval_id"]) for r in rows if r["method"] == "DECIDE"] == [
        ("manager", alice)
    ], "the decision is a row of its own"
