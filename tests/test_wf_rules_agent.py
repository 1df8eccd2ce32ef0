"""Rule agent steps: the closeguard agent under its own policy, with a scripted model.

The packaged call-follow-up-draft rule drafts an email (never sends one) and leaves a
review task; a duplicated delivery drafts nothing more; without a model the step is
skipped; an agent call its policy sends for approval parks the workflow run until a
person decides in the same approval store the console and CLI use.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from closeguard.agent import ScriptedChatModel
from closeguard.guardrails import Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools import ConfigError
from closeguard.workflows import Workflow
from closeguard.workflows.rules import rule_workflows
from tests._wf_library import Org, added, collections, event, rule_form

NOTE = "Spoke with the CTO: wants the SSO docs and a pricing sheet by Friday."


@pytest.fixture
def org(store: Store) -> Org:
    return Org(store, seed=6)


async def log_call(org: Org, note: str = NOTE) -> dict[str, Any]:
    lead_id = next(iter(org.sim.state["leads"]))
    events = await org.act(lambda c: c.calls.create({"lead_id": lead_id, "note": note}))
    return event(events, "activity.call", "created")


def drafting_model(lead_id: str, status: str = "draft") -> ScriptedChatModel:
    """Reads the lead, drafts one email on it, then says so."""
    return ScriptedChatModel(
        turns=[
            {"tool_calls": [{"name": "lead_get", "args": {"id": lead_id}}]},
            {
                "tool_calls": [
                    {
                        "name": "activity_email_create",
                        "args": {
                            "lead_id": lead_id,
                            "status": status,
                            "subject": "SSO docs and pricing",
                            "body_text": "Hi, as promised: the SSO docs and our pricing.",
                        },
                    }
                ]
            },
            {"text": "Drafted the SSO docs and pricing follow-up for review."},
        ]
    )


async def test_the_agent_drafts_one_email_and_the_rep_gets_a_review_task(org: Org) -> None:
    workflow = rule_form("call-follow-up-draft")
    call = await log_call(org)
    assert workflow.trigger.matches(call)
    before = org.snapshot()

    result = await org.run(workflow, event=call, llm=drafting_model(call["lead_id"]))

    assert result.status == "completed", result.error
    assert result.state["results"]["draft"].startswith("Drafted the SSO docs")
    diff = org.diff(before)
    [email_id] = added(diff, "activities")
    [task_id] = added(diff, "tasks")
    assert collections(diff) == {email_id: "+activities", task_id: "+tasks"}
    email = org.get("activities", email_id)
    assert email["_type"] == "Email" and email["status"] == "draft"
    assert email["lead_id"] == call["lead_id"]
    task = org.get("tasks", task_id)
    assert task["assigned_to"] == call["data"]["user_id"]
    assert call["data"]["id"] in task["text"]
    actors = {r["actor"] for r in AuditLog(org.store).rows()}
    assert "call-follow-up-draft/draft" in actors  # the agent's calls, under its own name


async def test_a_duplicated_delivery_drafts_nothing_more(org: Org) -> None:
    workflow = rule_form("call-follow-up-draft")
    call = await log_call(org)
    first = await org.run(workflow, event=call, llm=drafting_model(call["lead_id"]))
    before = org.snapshot()

    again = await org.run(workflow, event=call, llm=drafting_model(call["lead_id"]))

    assert first.status == again.status == "completed"
    assert again.state["results"]["draft"] == first.state["results"]["draft"]
    assert org.diff(before).empty


async def test_the_agent_cannot_send_the_email(org: Org) -> None:
    workflow = rule_form("call-follow-up-draft")
    call = await log_call(org)
    before = org.snapshot()

    result = await org.run(workflow, event=call, llm=drafting_model(call["lead_id"], "outbox"))

    assert result.status == "completed", result.error
    diff = org.diff(before)
    assert added(diff, "activities") == []  # the agent's review refused the send
    assert len(added(diff, "tasks")) == 1


async def test_without_a_model_the_step_is_skipped_with_a_note(org: Org) -> None:
    workflow = rule_form("call-follow-up-draft")
    call = await log_call(org)
    before = org.snapshot()

    result = await org.run(workflow, event=call)

    assert result.status == "completed", result.error
    assert org.diff(before).empty
    assert any("no model configured" in note for note in result.state["notes"])


APPROVING_POLICY = """
name: careful-drafter
grants: {lead: read, activity.email: write}
deny: [activity.email.update]
approve: [activity.email.create]
constraints:
  activity.email.create:
    lead_id: {scope: triggered}
    status: {in: [draft], required: true}
limits:
  per_run: {calls: 20, writes: 1}
"""
APPROVING_RULE = """
name: careful-call-follow-up
on: activity.call.created
steps:
  - agent: "Draft a follow-up for the call on {{ data.lead_id }}: {{ data.note }}"
    policy: careful-drafter.yaml
    as: draft
"""


def careful(tmp_path: Path) -> Workflow:
    (tmp_path / "careful-drafter.yaml").write_text(textwrap.dedent(APPROVING_POLICY))
    rule = tmp_path / "careful.yaml"
    rule.write_text(textwrap.dedent(APPROVING_RULE))
    [(workflow, _)] = rule_workflows(rule)
    return workflow


async def test_the_run_waits_for_the_approval_of_the_agents_call(org: Org, tmp_path: Path) -> None:
    workflow = careful(tmp_path)
    call = await log_call(org)
    model = drafting_model(call["lead_id"])
    before = org.snapshot()

    waiting = await org.run(workflow, event=call, llm=model)

    assert waiting.status == "waiting_approval" and waiting.approval_id
    assert org.diff(before).empty
    approval = Approvals(org.store).get(waiting.approval_id)
    assert approval is not None and approval.endpoint == "activity.email.create"
    assert approval.actor == "careful-call-follow-up/draft"
    assert approval.policy == "careful-drafter"
    still = await org.resume(workflow, waiting, event=call, llm=model)
    assert still.status == "waiting_approval"  # nobody has decided yet

    Approvals(org.store).approve(waiting.approval_id, by="manager")
    done = await org.resume(workflow, waiting, event=call, llm=model)

    assert done.status == "completed", done.error
    assert done.state["results"]["draft"].startswith("Drafted")
    [email_id] = added(org.diff(before), "activities")
    assert org.get("activities", email_id)["status"] == "draft"
    assert Approvals(org.store).get(waiting.approval_id).status == "consumed"  # type: ignore[union-attr]


async def test_a_rejected_approval_ends_the_run_without_the_call(org: Org, tmp_path: Path) -> None:
    workflow = careful(tmp_path)
    call = await log_call(org)
    model = drafting_model(call["lead_id"])
    before = org.snapshot()
    waiting = await org.run(workflow, event=call, llm=model)

    Approvals(org.store).reject(waiting.approval_id or "", by="manager", note="not now")
    done = await org.resume(workflow, waiting, event=call, llm=model)

    assert done.status == "rejected"
    assert org.diff(before).empty


def test_an_agent_policy_wider_than_the_rule_allows_does_not_load(tmp_path: Path) -> None:
    rule = tmp_path / "wide.yaml"
    rule.write_text(
        textwrap.dedent(
            """
            name: wide
            on: activity.call.created
            steps:
              - agent: "Tidy up this lead"
                policy: sales-rep
            agent_policy_max: email-drafter
            """
        )
    )
    with pytest.raises(ConfigError) as caught:
        rule_workflows(rule)
    assert str(caught.value).startswith(f"{rule}:6: agent policy 'sales-rep' is wider than")
    assert "agent_policy_max 'email-drafter'" in str(caught.value)
