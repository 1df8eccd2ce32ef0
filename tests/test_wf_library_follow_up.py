"""follow-up-on-status-change: one task for the owner per status change, nothing else."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from closeguard.store import Store
from closeguard.workflows import Workflow
from closeguard.workflows.library._common import business_days_after
from closeguard.workflows.testing import run_workflow
from tests._wf_library import Org, added, collections, event, rule_form


@pytest.fixture
def workflow() -> Workflow:
    """The packaged rule follow-up-on-status-change.yaml (was a Python module; same tests)."""
    return rule_form("follow-up-on-status-change")


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store)


def active_opportunity(org: Org) -> dict[str, object]:
    return org.first("opportunities", status_type="active")


async def move(org: Org, opp_id: str, label: str) -> dict[str, object]:
    status = org.status_id(label)
    events = await org.act(lambda c: c.opportunities.update(opp_id, {"status_id": status}))
    return event(events, "opportunity", "updated")


@pytest.mark.parametrize(
    ("label", "wording"),
    [("Won", "Won "), ("Lost", "Lost "), ("Proposal Sent", "moved to Proposal Sent")],
)
async def test_a_status_change_gives_the_owner_one_task_and_nothing_else(
    org: Org, label: str, wording: str, workflow: Workflow
) -> None:
    opp = active_opportunity(org)
    if opp["status_label"] == label:
        label = "Demo Scheduled"
    change = await move(org, str(opp["id"]), label)
    assert workflow.trigger.matches(change)
    before = org.snapshot()

    result = await org.run(workflow, event=change)

    assert result.status == "completed", result.error
    diff = org.diff(before)
    [task_id] = added(diff, "tasks")
    assert collections(diff) == {task_id: "+tasks"}
    task = org.get("tasks", task_id)
    assert task["lead_id"] == opp["lead_id"] and task["assigned_to"] == opp["user_id"]
    assert wording in task["text"] and str(opp["id"]) in task["text"]
    assert task["date"] == "2026-01-19"  # Thursday + 2 business days skips the weekend
    assert task["is_complete"] is False


async def test_the_same_change_twice_makes_one_task(org: Org, workflow: Workflow) -> None:
    opp = active_opportunity(org)
    change = await move(org, str(opp["id"]), "Won")
    first = await org.run(workflow, event=change)
    before = org.snapshot()

    again = await org.run(workflow, event=change)  # a duplicated delivery, a new run
    retried = await org.run(workflow, event=change, run_id=first.run_id)  # a retried run

    assert again.status == retried.status == "completed"
    assert org.diff(before).empty


class LosesOneAnswer(httpx.AsyncBaseTransport):
    """Passes requests on, but hangs up after the first task create has landed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/task/") and not self.lost:
            self.lost += 1
            raise httpx.RemoteProtocolError("server hung up", request=request)
        return response


async def test_a_run_cut_off_after_its_write_landed_reads_close_back(
    org: Org, workflow: Workflow
) -> None:
    opp = active_opportunity(org)
    change = await move(org, str(opp["id"]), "Won")
    before = org.snapshot()
    flaky = LosesOneAnswer(org.sim.transport())

    cut = await run_workflow(
        workflow,
        transport=flaky,
        api_key=org.sim.api_key,
        event=change,
        store=org.store,
        clock=org.clock,
    )
    retried = await org.run(workflow, event=change, run_id=cut.run_id)

    assert cut.status == "failed" and "CloseConnectionError" in str(cut.error)
    assert flaky.lost == 1 and retried.status == "completed", retried.error
    assert len(added(org.diff(before), "tasks")) == 1


async def test_a_later_change_of_the_same_deal_gets_its_own_task(
    org: Org, workflow: Workflow
) -> None:
    opp = active_opportunity(org)
    await org.run(workflow, event=await move(org, str(opp["id"]), "Won"))
    org.clock.advance(3600)
    before = org.snapshot()

    await org.run(workflow, event=await move(org, str(opp["id"]), "Lost"))

    [task_id] = added(org.diff(before), "tasks")
    assert org.get("tasks", task_id)["text"].startswith("Lost ")


async def test_near_misses_do_not_fire(org: Org, workflow: Workflow) -> None:
    opp = active_opportunity(org)
    value_events = await org.act(
        lambda c: c.opportunities.update(str(opp["id"]), {"value": 123_400})
    )
    created = await org.act(
        lambda c: c.opportunities.create({"lead_id": str(opp["lead_id"]), "value": 1})
    )
    lead_status = org.first("lead_statuses", label="Qualified")["id"]
    lead_events = await org.act(
        lambda c: c.leads.update(str(opp["lead_id"]), {"status_id": lead_status})
    )
    for near_miss in (
        event(value_events, "opportunity", "updated"),
        event(created, "opportunity", "created"),
        event(lead_events, "lead", "updated"),  # a lead's status, not a deal's
    ):
        assert not workflow.trigger.matches(near_miss)


async def test_the_policy_keeps_the_run_on_the_triggering_lead(
    org: Org, workflow: Workflow
) -> None:
    opp = active_opportunity(org)
    change = await move(org, str(opp["id"]), "Won")
    other_lead = next(lid for lid in org.sim.state["leads"] if lid != opp["lead_id"])
    forged = {**change, "data": {**change["data"], "lead_id": other_lead}}
    before = org.snapshot()

    result = await org.run(workflow, event=forged)  # in scope: the event's own lead_id only

    assert result.status == "failed"
    assert "denied by policy 'follow-up-on-status-change'" in str(result.error)
    assert "is not a lead this run was triggered for" in str(result.error)
    assert org.diff(before).empty


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (date(2026, 1, 15), 2, date(2026, 1, 19)),  # Thu -> Mon
        (date(2026, 1, 16), 1, date(2026, 1, 19)),  # Fri -> Mon
        (date(2026, 1, 17), 0, date(2026, 1, 19)),  # Sat -> Mon
        (date(2026, 1, 17), 1, date(2026, 1, 20)),  # Sat -> Tue
        (date(2026, 1, 12), 5, date(2026, 1, 19)),  # Mon -> next Mon
    ],
)
def test_business_days_skip_weekends(start: date, days: int, due: date) -> None:
    assert business_days_after(start, days) == due
