"""rep-offboarding: one approval, then the departing rep's open work moves, nothing else."""

from __future__ import annotations

from collections import Counter

import pytest

from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.workflows.library.rep_offboarding import WORKFLOW
from tests._wf_library import Org


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=8, leads=30)


def busiest_pair(org: Org) -> tuple[str, str]:
    """The user with the most open tasks leaves; the next user takes over."""
    counts = Counter(t["assigned_to"] for t in org.all("tasks", is_complete=False))
    leaving = counts.most_common(1)[0][0]
    return leaving, next(u for u in sorted(org.sim.state["users"]) if u != leaving)


async def owner_field(org: Org, owners: dict[str, str]) -> str:
    """A "Lead Owner" user field, set on the given leads."""
    async with org.client() as close:
        field = await close.custom_fields.lead.create({"name": "Lead Owner", "type": "user"})
        for lead_id, user in owners.items():
            await close.leads.update(lead_id, {f"custom.{field.id}": user})
    return field.id


async def test_after_one_approval_open_work_moves_and_nothing_else(org: Org) -> None:
    leaving, taking = busiest_pair(org)
    leads = sorted(org.sim.state["leads"])
    field_id = await owner_field(org, {leads[0]: leaving, leads[1]: leaving, leads[2]: taking})
    open_tasks = {t["id"] for t in org.all("tasks", assigned_to=leaving, is_complete=False)}
    open_opps = {o["id"] for o in org.all("opportunities", user_id=leaving, status_type="active")}
    assert open_tasks and open_opps
    assert org.all("tasks", assigned_to=leaving, is_complete=True)  # these stay
    params = {"from_user": leaving, "to_user": taking}
    before = org.snapshot()

    waiting = await org.run(WORKFLOW, params=params)

    assert waiting.status == "waiting_approval" and org.diff(before).empty
    assert waiting.state["tasks"] == len(open_tasks)
    approval = Approvals(org.store).get(str(waiting.approval_id))
    assert approval is not None and approval.endpoint == "task.bulk_update"
    Approvals(org.store).approve(approval.id, by="sales-manager")
    done = await org.resume(WORKFLOW, waiting, params=params)

    assert done.status == "completed", done.error
    diff = org.diff(before)
    assert not diff.added and not diff.removed
    bookkeeping = {"date_updated", "updated_by"}
    changed = {(c.collection, c.id): set(c.fields) - bookkeeping for c in diff.changed}
    assert changed == {
        **{("tasks", t): {"assigned_to"} for t in open_tasks},
        **{("opportunities", o): {"user_id"} for o in open_opps},
        **{("leads", lead): {f"custom.{field_id}"} for lead in leads[:2]},
    }
    assert all(org.get("tasks", t)["assigned_to"] == taking for t in open_tasks)
    assert all(org.get("opportunities", o)["user_id"] == taking for o in open_opps)
    assert org.get("leads", leads[0])[f"custom.{field_id}"] == taking


async def test_rejected_nothing_moves(org: Org) -> None:
    leaving, taking = busiest_pair(org)
    params = {"from_user": leaving, "to_user": taking}
    before = org.snapshot()
    waiting = await org.run(WORKFLOW, params=params)
    Approvals(org.store).reject(str(waiting.approval_id), by="sales-manager")

    done = await org.resume(WORKFLOW, waiting, params=params)

    assert done.status == "rejected" and org.diff(before).empty


async def test_even_with_no_open_tasks_the_run_asks_first(org: Org) -> None:
    leaving, taking = busiest_pair(org)
    async with org.client() as close:
        for task in org.all("tasks", assigned_to=leaving, is_complete=False):
            await close.tasks.update(task["id"], {"is_complete": True})
    before = org.snapshot()

    waiting = await org.run(WORKFLOW, params={"from_user": leaving, "to_user": taking})

    assert waiting.status == "waiting_approval" and org.diff(before).empty


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"to_user": "same"}, "from_user and to_user are the same user"),
        ({"to_user": "user_nobody"}, "NotFound"),
    ],
)
async def test_bad_users_fail_before_anything_moves(
    org: Org, params: dict[str, str], message: str
) -> None:
    leaving, _ = busiest_pair(org)
    target = leaving if params["to_user"] == "same" else params["to_user"]
    before = org.snapshot()

    result = await org.run(WORKFLOW, params={"from_user": leaving, "to_user": target})

    assert result.status == "failed" and message in str(result.error)
    assert org.diff(before).empty and Approvals(org.store).list() == []


def test_it_is_manual_and_needs_both_users() -> None:
    assert WORKFLOW.trigger.required == ("from_user", "to_user")
