"""new-lead-triage: an owner by round robin and an intro call task due now."""

from __future__ import annotations

from typing import Any

import pytest

from closeguard.store import Store
from closeguard.workflows.library.new_lead_triage import WORKFLOW
from tests._wf_library import NOW, Org, added, collections, event


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store)


async def new_lead(org: Org, name: str = "Fresh Prospects Inc", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "contacts": [{"name": "Ada", "emails": [{"email": "ada@fresh.test"}]}]}
    events = await org.act(lambda c: c.leads.create({**body, **extra}))
    return event(events, "lead", "created")


def users_in_turn(org: Org) -> list[str]:
    return sorted(org.sim.state["users"])


async def owner_field(org: Org) -> str:
    async with org.client() as close:
        field = await close.custom_fields.lead.create({"name": "Lead Owner", "type": "user"})
    return field.id


async def test_a_new_lead_gets_an_intro_task_for_the_next_user_and_nothing_else(org: Org) -> None:
    created = await new_lead(org)
    assert WORKFLOW.trigger.matches(created)
    before = org.snapshot()

    result = await org.run(WORKFLOW, event=created)

    assert result.status == "completed", result.error
    diff = org.diff(before)
    [task_id] = added(diff, "tasks")
    assert collections(diff) == {task_id: "+tasks"}  # no owner field: the task says who
    task = org.get("tasks", task_id)
    assert (
        task["lead_id"] == created["object_id"]
        and task["text"] == "Intro call: Fresh Prospects Inc"
    )
    assert task["assigned_to"] == users_in_turn(org)[0]  # the rotation's first turn
    assert task["date"] == NOW.isoformat()  # due the moment the lead arrived


async def test_owners_take_turns(org: Org) -> None:
    owners = []
    for i in range(4):
        result = await org.run(WORKFLOW, event=await new_lead(org, f"Lead {i}"))
        owners.append(result.state["owner"])
    assert sorted(owners) == users_in_turn(org)


async def test_the_users_parameter_limits_the_rotation(org: Org) -> None:
    two = users_in_turn(org)[1:3]
    owners = set()
    for i in range(3):
        created = await new_lead(org, f"Lead {i}")
        result = await org.run(WORKFLOW, event=created, params={"users": ", ".join(two)})
        owners.add(result.state["owner"])  # given as --param users=a,b
    assert owners == set(two)


async def test_the_lead_owner_field_is_set_when_the_org_has_one(org: Org) -> None:
    field_id = await owner_field(org)
    created = await new_lead(org)
    before = org.snapshot()

    result = await org.run(WORKFLOW, event=created)

    diff = org.diff(before)
    [task_id] = added(diff, "tasks")
    lead_id = created["object_id"]
    assert collections(diff) == {task_id: "+tasks", lead_id: "~leads"}
    [change] = diff.changed
    assert set(change.fields) - {"date_updated"} == {f"custom.{field_id}"}
    assert org.get("leads", lead_id)[f"custom.{field_id}"] == result.state["owner"]


async def test_a_lead_created_with_an_owner_keeps_it(org: Org) -> None:
    field_id = await owner_field(org)
    chosen = users_in_turn(org)[3]
    created = await new_lead(org, **{f"custom.{field_id}": chosen})
    before = org.snapshot()

    await org.run(WORKFLOW, event=created)

    assert org.get("leads", created["object_id"])[f"custom.{field_id}"] == chosen
    assert [c.collection for c in org.diff(before).added] == ["tasks"]


async def test_the_same_event_twice_triages_once(org: Org) -> None:
    await owner_field(org)
    created = await new_lead(org)
    await org.run(WORKFLOW, event=created)
    org.clock.advance(60)
    before = org.snapshot()

    again = await org.run(WORKFLOW, event=created)

    assert again.status == "completed"
    assert org.diff(before).empty


async def test_near_misses_do_not_fire(org: Org) -> None:
    lead_id = next(iter(org.sim.state["leads"]))
    renamed = await org.act(lambda c: c.leads.update(lead_id, {"name": "Renamed"}))
    contact = await org.act(lambda c: c.contacts.create({"lead_id": lead_id, "name": "Bo"}))
    assert not WORKFLOW.trigger.matches(event(renamed, "lead", "updated"))
    assert not WORKFLOW.trigger.matches(event(contact, "contact", "created"))
