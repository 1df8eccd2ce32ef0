"""duplicate-lead-merge: a duplicate waits for a person; approved it merges once, rejected
nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.workflows.library.duplicate_lead_merge import WORKFLOW
from tests._wf_library import Org, event


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=7)


def original(org: Org) -> tuple[dict[str, Any], str]:
    """The oldest lead with a contact email, and that email."""
    for lead in sorted(org.all("leads"), key=lambda x: x["date_created"]):
        for contact in org.all("contacts", lead_id=lead["id"]):
            if contact["emails"]:
                return lead, contact["emails"][0]["email"]
    raise AssertionError("no lead with a contact email")


async def new_lead(org: Org, email: str) -> dict[str, Any]:
    body = {"name": "Dup Co", "contacts": [{"name": "Dup", "emails": [{"email": email}]}]}
    return event(await org.act(lambda c: c.leads.create(body)), "lead", "created")


async def test_a_duplicate_waits_for_approval_then_merges_into_the_original(org: Org) -> None:
    lead, email = original(org)
    created = await new_lead(org, email.upper())  # emails compare without case
    dup = created["object_id"]
    assert WORKFLOW.trigger.matches(created)
    before = org.snapshot()

    waiting = await org.run(WORKFLOW, event=created)

    assert waiting.status == "waiting_approval" and waiting.approval_id
    assert waiting.state["destination"] == lead["id"] and org.diff(before).empty
    approval = Approvals(org.store).get(waiting.approval_id)
    assert approval is not None and approval.endpoint == "lead.merge"
    assert approval.args["body"] == {"source": dup, "destination": lead["id"]}

    Approvals(org.store).approve(waiting.approval_id, by="manager")
    done = await org.resume(WORKFLOW, waiting, event=created)

    assert done.status == "completed", done.error
    diff = org.diff(before)
    assert [(c.collection, c.id) for c in diff.removed] == [("leads", dup)]
    moved = [c for c in diff.changed if c.collection != "leads"]
    assert moved and all(c.fields["lead_id"] == (dup, lead["id"]) for c in moved)
    assert {c.id for c in diff.changed if c.collection == "leads"} <= {lead["id"]}
    assert not diff.added
    merges = [e for e in org.sim.events if e["action"] == "merged"]
    assert len(merges) == 1 and merges[0]["meta"]["merge_source_lead_id"] == dup


async def test_rejected_nothing_changes(org: Org) -> None:
    _, email = original(org)
    created = await new_lead(org, email)
    before = org.snapshot()
    waiting = await org.run(WORKFLOW, event=created)
    assert waiting.approval_id

    Approvals(org.store).reject(waiting.approval_id, by="manager", note="not the same company")
    done = await org.resume(WORKFLOW, waiting, event=created)

    assert done.status == "rejected"
    assert org.diff(before).empty


async def test_after_the_merge_the_same_event_does_nothing(org: Org) -> None:
    _, email = original(org)
    created = await new_lead(org, email)
    waiting = await org.run(WORKFLOW, event=created)
    assert waiting.approval_id
    Approvals(org.store).approve(waiting.approval_id, by="manager")
    await org.resume(WORKFLOW, waiting, event=created)
    before = org.snapshot()

    again = await org.run(WORKFLOW, event=created)

    assert again.status == "completed" and again.approval_id is None
    assert org.diff(before).empty


async def test_no_shared_email_means_no_merge_and_no_approval(org: Org) -> None:
    _, email = original(org)
    for near_miss in ("someone@else.test", f"x{email}"):  # another address; a longer one
        created = await new_lead(org, near_miss)
        before = org.snapshot()
        result = await org.run(WORKFLOW, event=created)
        assert result.status == "completed" and result.approval_id is None
        assert org.diff(before).empty
    assert Approvals(org.store).list() == []


async def test_other_lead_events_do_not_fire(org: Org) -> None:
    lead, _ = original(org)
    renamed = await org.act(lambda c: c.leads.update(lead["id"], {"name": "New name"}))
    assert not WORKFLOW.trigger.matches(event(renamed, "lead", "updated"))
