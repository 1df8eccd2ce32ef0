"""Rules on the runtime: the inbox, queue and worker under duplicated, out-of-order and
missed deliveries (Event Log catch-up), and templates that treat Close's data as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from closeguard.evals.wf_trial import _catch_up, drain, eval_worker
from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.workflows import Inbox, SqlRunQueue, Workflow, load_workflows
from closeguard.workflows.rules import load_rules_text
from tests._wf_library import Org, added, event

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "rules"


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=3)


def big_deal_rule() -> Workflow:
    return load_workflows(EXAMPLES / "big-deal-follow-up.yaml")["big-deal-follow-up"]


async def change_status(org: Org, opp: dict[str, Any], label: str) -> dict[str, Any]:
    if org.get("opportunities", opp["id"])["status_label"] == label:
        label = "Demo Scheduled"
    status = org.status_id(label)
    events = await org.act(lambda c: c.opportunities.update(opp["id"], {"status_id": status}))
    return event(events, "opportunity", "updated")


def big_deals(org: Org, count: int) -> list[dict[str, Any]]:
    """Active deals of 1,000 USD or more, on ``count`` different leads (the rule's task names
    the lead, not the deal: its read-back takes a same-day task on the lead for its own)."""
    found: dict[str, dict[str, Any]] = {}
    for opp in org.all("opportunities", status_type="active"):
        if (opp["value"] or 0) >= 100_000:
            found.setdefault(opp["lead_id"], opp)
    assert len(found) >= count
    return list(found.values())[:count]


async def deliver_and_run(org: Org, workflow: Workflow, events: list[dict[str, Any]]) -> None:
    queue = SqlRunQueue(org.store, clock=org.clock)
    inbox = Inbox(org.store, [workflow], queue)
    for item in events:
        await inbox.add(item, source="webhook")
    worker = eval_worker(workflow, org.sim, org.store, queue)
    await drain(worker, queue, Approvals(org.store), "approve", org.clock)


async def test_duplicated_and_out_of_order_deliveries_make_one_task_per_change(org: Org) -> None:
    workflow = big_deal_rule()
    first, second = big_deals(org, 2)
    one = await change_status(org, first, "Proposal Sent")
    org.clock.advance(60)
    two = await change_status(org, second, "Proposal Sent")
    before = org.snapshot()

    await deliver_and_run(org, workflow, [two, one, two, one, one])

    tasks = [org.get("tasks", t) for t in added(org.diff(before), "tasks")]
    assert sorted(t["lead_id"] for t in tasks) == sorted([first["lead_id"], second["lead_id"]])
    assert all(t["text"].startswith("Big deal on ") for t in tasks)


async def test_a_missed_delivery_is_brought_back_by_the_event_log(org: Org) -> None:
    workflow = big_deal_rule()
    [deal] = big_deals(org, 1)
    await change_status(org, deal, "Proposal Sent")  # no webhook reaches the runtime
    before = org.snapshot()
    queue = SqlRunQueue(org.store, clock=org.clock)
    inbox = Inbox(org.store, [workflow], queue)

    stored = await _catch_up(org.sim, inbox, org.store)
    await drain(
        eval_worker(workflow, org.sim, org.store, queue),
        queue,
        Approvals(org.store),
        "approve",
        org.clock,
    )

    assert stored >= 1
    [task] = [org.get("tasks", t) for t in added(org.diff(before), "tasks")]
    assert task["lead_id"] == deal["lead_id"]


async def test_a_lead_name_with_template_syntax_is_data_not_code(org: Org) -> None:
    workflow = big_deal_rule()
    [deal] = big_deals(org, 1)
    name = "{{ 7 * 7 }} {% for x in range(3) %}loop{% endfor %} {{ params }}"
    await org.act(lambda c: c.leads.update(deal["lead_id"], {"name": name}))
    change = await change_status(org, deal, "Proposal Sent")
    before = org.snapshot()

    result = await org.run(workflow, event=change)

    assert result.status == "completed", result.error
    [task_id] = added(org.diff(before), "tasks")
    assert org.get("tasks", task_id)["text"] == f"Big deal on {name}: follow up"


async def test_the_sandbox_refuses_a_rule_that_reaches_for_python_internals(org: Org) -> None:
    [workflow] = load_rules_text(
        """
name: sneaky
on: opportunity.updated
steps:
  - create: task
    fields:
      lead_id: "{{ data.lead_id }}"
      text: "{{ ''.__class__.__mro__[1].__subclasses__() }}"
"""
    )
    [deal] = big_deals(org, 1)
    change = await change_status(org, deal, "Proposal Sent")
    before = org.snapshot()

    result = await org.run(workflow, event=change)

    assert result.status == "failed"
    assert "RuleFailed" in str(result.error) and "SecurityError" in str(result.error)
    assert ":5: step step1: template:" in str(result.error)  # the rule's line
    assert org.diff(before).empty
