"""won-deal-handoff: a won deal gets a handoff note, a customer lead and an onboarding task."""

from __future__ import annotations

from typing import Any

import pytest

from closeguard.store import Store
from closeguard.workflows import Workflow
from tests._wf_library import Org, added, collections, event, rule_form


@pytest.fixture
def workflow() -> Workflow:
    """The packaged rule won-deal-handoff.yaml (was a Python module; same tests)."""
    return rule_form("won-deal-handoff")


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=5)


def deal_on_a_prospect(org: Org) -> dict[str, Any]:
    customer = org.status_id("Customer", "lead_statuses")
    return next(
        o
        for o in org.all("opportunities", status_type="active")
        if org.get("leads", o["lead_id"])["status_id"] != customer
    )


async def win(org: Org, opp_id: str, label: str = "Won") -> dict[str, Any]:
    status = org.status_id(label)
    events = await org.act(lambda c: c.opportunities.update(opp_id, {"status_id": status}))
    return event(events, "opportunity", "updated")


async def test_a_won_deal_hands_off_and_changes_nothing_else(org: Org, workflow: Workflow) -> None:
    opp = deal_on_a_prospect(org)
    won = await win(org, opp["id"])
    assert workflow.trigger.matches(won)
    before = org.snapshot()

    result = await org.run(workflow, event=won)

    assert result.status == "completed", result.error
    diff = org.diff(before)
    [task_id] = added(diff, "tasks")
    activities = [org.get("activities", i) for i in added(diff, "activities")]
    assert sorted(a["_type"] for a in activities) == ["LeadStatusChange", "Note"]
    note = next(a for a in activities if a["_type"] == "Note")
    assert collections(diff) == {
        task_id: "+tasks",
        **{a["id"]: "+activities" for a in activities},
        opp["lead_id"]: "~leads",
    }
    lead = org.get("leads", opp["lead_id"])
    assert lead["status_label"] == "Customer"
    [lead_change] = diff.changed
    assert set(lead_change.fields) - {"date_updated"} == {"status_id", "status_label"}
    assert note["lead_id"] == opp["lead_id"] and note["note"].startswith(
        f"Handoff: deal {opp['id']} won"
    )
    task = org.get("tasks", task_id)
    assert task["assigned_to"] == opp["user_id"] and task["date"] == "2026-01-20"
    assert task["text"].startswith("Onboarding kickoff")


async def test_the_same_win_twice_hands_off_once(org: Org, workflow: Workflow) -> None:
    won = await win(org, deal_on_a_prospect(org)["id"])
    await org.run(workflow, event=won)
    org.clock.advance(30)
    before = org.snapshot()

    again = await org.run(workflow, event=won)

    assert again.status == "completed" and org.diff(before).empty


async def test_a_lead_already_customer_keeps_its_status(org: Org, workflow: Workflow) -> None:
    opp = deal_on_a_prospect(org)
    customer = org.status_id("Customer", "lead_statuses")
    await org.act(lambda c: c.leads.update(opp["lead_id"], {"status_id": customer}))
    won = await win(org, opp["id"])
    before = org.snapshot()

    await org.run(workflow, event=won)

    diff = org.diff(before)
    assert not diff.changed
    assert sorted(c.collection for c in diff.added) == ["activities", "tasks"]


async def test_an_unknown_customer_status_fails_before_any_write(
    org: Org, workflow: Workflow
) -> None:
    won = await win(org, deal_on_a_prospect(org)["id"])
    before = org.snapshot()

    result = await org.run(workflow, event=won, params={"customer_status": "Client"})

    assert result.status == "failed"
    assert "no lead status labelled 'Client' (parameter customer_status)" in str(result.error)
    assert org.diff(before).empty


async def test_near_misses_do_not_fire(org: Org, workflow: Workflow) -> None:
    opp = deal_on_a_prospect(org)
    lost = await win(org, opp["id"], "Lost")
    other = next(o for o in org.all("opportunities", status_type="active") if o["id"] != opp["id"])
    moved = await win(
        org,
        other["id"],
        "Proposal Sent" if other["status_label"] != "Proposal Sent" else "Discovery",
    )
    won_already = org.first("opportunities", status_type="won")
    edited = await org.act(lambda c: c.opportunities.update(won_already["id"], {"confidence": 99}))
    for near_miss in (lost, moved, event(edited, "opportunity", "updated")):
        assert not workflow.trigger.matches(near_miss)
