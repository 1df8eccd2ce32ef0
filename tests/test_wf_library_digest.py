"""overdue-task-digest: one draft (never sent) per user with overdue tasks, once a day."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closeguard.guardrails import Guarded, Policy
from closeguard.store import Store
from closeguard.tools import PolicyViolation
from closeguard.workflows.library.overdue_task_digest import WORKFLOW
from tests._wf_library import NOW, Org, added, collections


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=2, leads=30)


def overdue_by_user(org: Org, today: str = "2026-01-15") -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for task in org.all("tasks", is_complete=False):
        if task["date"] and task["date"][:10] < today:
            out.setdefault(task["assigned_to"], set()).add(task["text"])
    return out


async def test_one_draft_per_user_lists_their_overdue_tasks_and_nothing_else(org: Org) -> None:
    expected = overdue_by_user(org)
    assert len(expected) >= 2
    before = org.snapshot()

    result = await org.run(WORKFLOW, tick=NOW)

    assert result.status == "completed", result.error
    diff = org.diff(before)
    drafts = [org.get("activities", i) for i in added(diff, "activities")]
    assert set(collections(diff).values()) == {"+activities"}
    emails = {u["email"]: uid for uid, u in org.sim.state["users"].items()}
    assert {emails[d["to"][0]] for d in drafts} == set(expected) and len(drafts) == len(expected)
    for draft in drafts:
        assert draft["_type"] == "Email" and draft["status"] == "draft"
        assert draft["subject"] == "Your overdue tasks on 2026-01-15"
        listed = {line for line in draft["body_text"].splitlines() if line.startswith("- due")}
        texts = expected[emails[draft["to"][0]]]
        assert len(listed) == len(texts) and all(any(t in line for line in listed) for t in texts)
    assert not [e for e in org.sim.events if e["action"] == "sent"]


async def test_done_and_future_tasks_are_left_out(org: Org) -> None:
    user, texts = next(iter(overdue_by_user(org).items()))
    task = next(
        t for t in org.all("tasks", assigned_to=user, is_complete=False) if t["text"] in texts
    )
    async with org.client() as close:
        await close.tasks.update(task["id"], {"is_complete": True})
        await close.tasks.create(
            {
                "lead_id": task["lead_id"],
                "assigned_to": user,
                "text": "Due today",
                "date": "2026-01-15",
            }
        )
    before = org.snapshot()

    await org.run(WORKFLOW, tick=NOW)

    drafts = [org.get("activities", i) for i in added(org.diff(before), "activities")]
    body = next(
        d["body_text"] for d in drafts if d["to"] == [org.sim.state["users"][user]["email"]]
    )
    assert "Due today" not in body
    assert body.count("- due") == len(overdue_by_user(org)[user])


async def test_a_second_run_the_same_day_drafts_nothing_and_the_next_day_drafts_again(
    org: Org,
) -> None:
    await org.run(WORKFLOW, tick=NOW)
    before = org.snapshot()

    again = await org.run(WORKFLOW, tick=NOW)

    assert again.status == "completed" and org.diff(before).empty
    org.clock.advance(86400)
    await org.run(WORKFLOW, tick=NOW + timedelta(days=1))
    assert len(added(org.diff(before), "activities")) == len(overdue_by_user(org, "2026-01-16"))


async def test_its_policy_cannot_send_or_edit_mail(org: Org) -> None:
    lead_id = next(iter(org.sim.state["leads"]))
    guard = Guarded(Policy.load("overdue-task-digest"), store=org.store)
    async with org.sim.client(policy=guard, actor="t") as close:
        for status in ("outbox", "scheduled"):
            with pytest.raises(PolicyViolation):
                await close.emails.create(
                    {"lead_id": lead_id, "to": ["a@b.test"], "status": status}
                )
        with pytest.raises(PolicyViolation, match="status is required"):
            await close.emails.create({"lead_id": lead_id, "to": ["a@b.test"]})
        draft = await close.emails.create(
            {"lead_id": lead_id, "to": ["a@b.test"], "status": "draft"}
        )
        with pytest.raises(PolicyViolation):
            await close.emails.update(draft.id, {"status": "outbox"})
    assert not [e for e in org.sim.events if e["action"] == "sent"]
