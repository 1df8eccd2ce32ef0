"""stale-opportunity-nudge: a nudge per quiet active deal, unless an open nudge exists."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeguard.store import Store
from closeguard.workflows import Workflow
from tests._wf_library import NOW, Org, added, collections, rule_form


@pytest.fixture
def workflow() -> Workflow:
    """The packaged rule stale-opportunity-nudge.yaml (was a Python module; same tests)."""
    return rule_form("stale-opportunity-nudge")


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=4, leads=40)


def expected_stale(org: Org, days: int = 14) -> set[str]:
    """Active deals whose lead has had no activity, and which were not touched, in ``days``."""
    cutoff = (NOW - timedelta(days=days)).isoformat()
    out = set()
    for opp in org.all("opportunities", status_type="active"):
        recent = [
            a for a in org.all("activities", lead_id=opp["lead_id"]) if a["date_created"] > cutoff
        ]
        if not recent and opp["date_updated"] <= cutoff:
            out.add(opp["id"])
    return out


def nudged(org: Org, task_ids: list[str]) -> dict[str, dict[str, object]]:
    """Nudge tasks by the opportunity their text names."""
    out = {}
    for task_id in task_ids:
        task = org.get("tasks", task_id)
        opp_id = str(task["text"]).split("(")[1].split(",")[0]
        out[opp_id] = task
    return out


async def test_each_quiet_active_deal_gets_one_nudge_for_its_owner(
    org: Org, workflow: Workflow
) -> None:
    stale = expected_stale(org)
    assert 2 <= len(stale) < len(org.all("opportunities"))  # the world has both kinds
    before = org.snapshot()

    result = await org.run(workflow, tick=NOW)

    assert result.status == "completed", result.error
    diff = org.diff(before)
    tasks = added(diff, "tasks")
    assert set(collections(diff).values()) == {"+tasks"}
    by_opp = nudged(org, tasks)
    assert set(by_opp) == stale and len(tasks) == len(stale)
    for opp_id, task in by_opp.items():
        opp = org.get("opportunities", opp_id)
        assert task["lead_id"] == opp["lead_id"] and task["assigned_to"] == opp["user_id"]
        assert str(task["text"]).startswith("Nudge: no activity for 14 days")


async def test_an_open_nudge_is_not_repeated_but_a_completed_one_is(
    org: Org, workflow: Workflow
) -> None:
    first = await org.run(workflow, tick=NOW)
    assert first.status == "completed"
    nudges = org.all("tasks")
    done = next(t for t in nudges if str(t["text"]).startswith("Nudge:"))
    async with org.client() as close:
        await close.tasks.update(done["id"], {"is_complete": True})
    org.clock.advance(86400)
    before = org.snapshot()

    await org.run(workflow, tick=NOW + timedelta(days=1))

    [again] = added(org.diff(before), "tasks")
    assert org.get("tasks", again)["lead_id"] == done["lead_id"]


async def test_recent_activity_or_a_shorter_window_changes_who_is_nudged(
    org: Org, workflow: Workflow
) -> None:
    stale = sorted(expected_stale(org))
    revived = org.get("opportunities", stale[0])
    await org.act(lambda c: c.notes.create({"lead_id": revived["lead_id"], "note": "Spoke today"}))
    before = org.snapshot()

    await org.run(workflow, tick=NOW)

    by_opp = nudged(org, added(org.diff(before), "tasks"))
    assert revived["id"] not in by_opp
    assert set(by_opp) == set(stale) - {revived["id"]} - {
        o["id"] for o in org.all("opportunities", lead_id=revived["lead_id"])
    }


async def test_max_nudges_caps_a_run(org: Org, workflow: Workflow) -> None:
    before = org.snapshot()
    result = await org.run(workflow, tick=NOW, params={"max_nudges": 1})
    assert result.status == "completed"
    assert len(added(org.diff(before), "tasks")) == 1


def test_it_runs_daily(workflow: Workflow) -> None:
    assert workflow.trigger.cron == "0 8 * * *"
