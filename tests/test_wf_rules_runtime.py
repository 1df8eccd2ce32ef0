"""Rules on the runtime: the inbox, queue and worker under duplicated, out-of-order and
missed deliveries (Event Log catch-up), and templates that treat Close's data as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from closeguard.agent import AgentInfo, FunctionChatModel
from closeguard.evals.wf_trial import _catch_up, drain, eval_worker
from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.workflows import Inbox, SqlRunQueue, Workflow, load_workflows
from closeguard.workflows.rules import load_rules_text
from tests._wf_library import NOW, Org, added, event

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


LLM_RULE = """
name: call-notes
on: activity.call.created
steps:
  - llm: "Summarize this call for the CRM: {{ data.note }}"
    as: summary
    output: {headline: text, urgent: boolean}
  - create: activity.note
    skip_if: {summary: {required: false}}
    fields:
      lead_id: "{{ data.lead_id }}"
      note: "{{ '[urgent] ' if summary.urgent else '' }}{{ summary.headline }}"
"""


def answering(text: str) -> FunctionChatModel:
    def answer(messages: list[BaseMessage], info: AgentInfo) -> str:
        assert "headline" in str(messages[0].content)  # the typed output is asked for
        assert "budget approved" in str(messages[-1].content)
        return text

    return FunctionChatModel(fn=answer)


async def logged_call(org: Org) -> dict[str, Any]:
    lead_id = next(iter(org.sim.state["leads"]))
    events = await org.act(
        lambda c: c.calls.create({"lead_id": lead_id, "note": "budget approved, sign Friday"})
    )
    return event(events, "activity.call", "created")


async def test_an_llm_step_answers_in_its_typed_output_for_later_steps(org: Org) -> None:
    [workflow] = load_rules_text(LLM_RULE)
    call = await logged_call(org)
    before = org.snapshot()
    model = answering('{"headline": "Budget approved; signing Friday", "urgent": true}')

    result = await org.run(workflow, event=call, llm=model)

    assert result.status == "completed", result.error
    assert result.state["results"]["summary"] == {
        "headline": "Budget approved; signing Friday",
        "urgent": True,
    }
    [note_id] = added(org.diff(before), "activities")
    assert org.get("activities", note_id)["note"] == "[urgent] Budget approved; signing Friday"


async def test_without_a_model_the_llm_step_is_skipped_with_a_note(org: Org) -> None:
    [workflow] = load_rules_text(LLM_RULE)
    call = await logged_call(org)
    before = org.snapshot()

    result = await org.run(workflow, event=call)

    assert result.status == "completed", result.error
    assert org.diff(before).empty
    assert result.state["notes"][0].startswith("summary: skipped, no model configured")


async def test_an_answer_that_does_not_fit_the_output_fails_the_run(org: Org) -> None:
    [workflow] = load_rules_text(LLM_RULE)
    call = await logged_call(org)

    result = await org.run(workflow, event=call, llm=answering('{"headline": 3}'))

    assert result.status == "failed"
    assert "step summary: the model's answer does not fit output" in str(result.error)


async def test_a_tick_fired_twice_runs_once_and_a_retried_run_writes_nothing(org: Org) -> None:
    workflow = load_workflows(EXAMPLES / "hot-deals-check.yaml")["hot-deals-check"]
    hot = [o for o in org.all("opportunities", status_type="active") if o["confidence"] >= 80]
    assert hot
    queue = SqlRunQueue(org.store, clock=org.clock)
    inbox = Inbox(org.store, [workflow], queue)
    before = org.snapshot()

    first = await inbox.add_tick(workflow.name, NOW)
    again = await inbox.add_tick(workflow.name, NOW)  # another scheduler, the same tick
    await drain(
        eval_worker(workflow, org.sim, org.store, queue),
        queue,
        Approvals(org.store),
        "approve",
        org.clock,
    )
    assert first is not None and again is None
    tasks = added(org.diff(before), "tasks")
    assert len(tasks) == min(len(hot), 5)
    middle = org.snapshot()

    retried = await org.run(workflow, tick=NOW, run_id=first)  # its journal answers
    duplicate = await org.run(workflow, tick=NOW)  # a new run: the read-backs answer

    assert retried.status == duplicate.status == "completed"
    assert org.diff(middle).empty
