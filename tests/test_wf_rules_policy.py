"""The derived policy: a rule can do what its steps say and nothing else.

For each packaged and example rule the endpoints its policy allows are listed here by hand
(what its steps and read-backs call); every other catalog endpoint is denied at every
access level. Running a rule calls only allowed endpoints; a call off the triggering lead,
an extra field or a second write is refused; ``policy:`` narrows; ``policy_data`` is the
data a policy YAML holds; ``wider_than`` compares an agent's policy with its ceiling.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from closeguard.guardrails import Guard, Policy, RunContext, shipped_policies
from closeguard.guardrails.static import possible_access, static_decisions
from closeguard.tools.catalog import ENDPOINTS, classify
from closeguard.workflows import Workflow, load_workflows, packaged_workflows
from closeguard.workflows.rules import load_rules_text, policy_data, wider_than

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "rules"
ALLOWED = {
    "follow-up-on-status-change": {"status.opportunity.list", "task.list", "task.create"},
    "won-deal-handoff": {
        "status.lead.list",
        "lead.get",
        "lead.update",
        "activity.note.list",
        "activity.note.create",
        "task.list",
        "task.create",
    },
    "stale-opportunity-nudge": {"opportunity.list", "activity.list", "task.list", "task.create"},
    "call-follow-up-draft": {"task.list", "task.create"},
    "big-deal-follow-up": {"lead.get", "task.list", "task.create"},
    "lost-deal-review": {"activity.note.list", "activity.note.create"},
    "new-lead-hello": {"task.list", "task.create"},
    "hot-deals-check": {"opportunity.list", "task.list", "task.create"},
}


def rules() -> dict[str, Workflow]:
    found = {n: w for n, w in packaged_workflows().items() if n in ALLOWED}
    return {**found, **load_workflows(EXAMPLES)}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_exactly_the_steps_endpoints_are_allowed(name: str) -> None:
    policy = rules()[name].load_policy()
    table = static_decisions(policy)
    allowed = {
        ep.name
        for ep in ENDPOINTS
        if any(table[(ep.name, a)].outcome != "deny" for a in possible_access(ep))
    }
    assert allowed == ALLOWED[name]
    for ep in ENDPOINTS:
        if ep.name in ALLOWED[name]:
            assert table[(ep.name, ep.access)].outcome in ("allow", "approve"), ep.name
    assert "*" not in policy.grants


LEAD, OTHER = "lead_mine", "lead_other"


def decide(policy: Policy, method: str, path: str, body: dict[str, object] | None = None) -> str:
    call = classify(method, path, body or {}, {})
    context = RunContext(actor="t", run_id="r", triggered_leads=frozenset({LEAD}))
    return Guard(policy).check(call, context).outcome


def test_the_triggering_lead_only_and_only_the_fields_the_step_sets() -> None:
    policy = rules()["won-deal-handoff"].load_policy()
    assert decide(policy, "PUT", f"/lead/{LEAD}/", {"status_id": "stat_1"}) == "allow"
    assert decide(policy, "PUT", f"/lead/{OTHER}/", {"status_id": "stat_1"}) == "deny"
    assert decide(policy, "PUT", f"/lead/{LEAD}/", {"name": "Renamed"}) == "deny"
    task = {"lead_id": LEAD, "text": "t", "date": "2026-01-01"}
    assert decide(policy, "POST", "/task/", task) == "allow"
    assert decide(policy, "POST", "/task/", {**task, "lead_id": OTHER}) == "deny"
    assert decide(policy, "POST", "/task/", {**task, "is_complete": True}) == "deny"
    assert decide(policy, "DELETE", f"/lead/{LEAD}/") == "deny"
    assert decide(policy, "POST", "/activity/email/", {"lead_id": LEAD, "status": "draft"}) == (
        "deny"
    )


def test_per_run_writes_equal_the_steps_writes() -> None:
    handoff = rules()["won-deal-handoff"].load_policy().limits.per_run
    assert handoff.writes == 3 and handoff.destructive == 0
    assert dict(handoff.per_endpoint) == {
        "lead.update": 1,
        "activity.note.create": 1,
        "task.create": 1,
    }
    stale = rules()["stale-opportunity-nudge"].load_policy().limits
    assert stale.per_run.writes == 50  # its for_each limit, params.max_nudges
    assert stale.per_window.per_endpoint == {"task.create": 200}  # the rule's own limits:
    assert stale.window_seconds == 86400


def test_policy_narrows_with_approvals_and_denies_but_never_widens() -> None:
    text = """
    name: careful-notes
    on: lead.created
    policy: {approve: [activity.note.create], deny: [activity.note.list]}
    steps:
      - create: activity.note
        fields: {lead_id: "{{ data.id }}", note: hello}
    """
    [workflow] = load_rules_text(text.replace("\n    ", "\n"))
    policy = workflow.load_policy()
    assert decide(policy, "POST", "/activity/note/", {"lead_id": LEAD, "note": "hello"}) == (
        "approve"
    )
    assert decide(policy, "GET", "/activity/note/") == "deny"


@pytest.mark.parametrize("name", [*shipped_policies(), "won-deal-handoff", "hot-deals-check"])
def test_policy_data_reads_back_as_the_same_policy(name: str) -> None:
    policy = rules()[name].load_policy() if name in ALLOWED else Policy.load(name)
    again = Policy.from_dict(policy_data(policy))
    for key in ("name", "grants", "deny", "approve", "constraints", "limits", "mode"):
        assert getattr(again, key) == getattr(policy, key), key


def test_an_agent_policy_is_checked_against_its_ceiling() -> None:
    rep, drafter = Policy.load("sales-rep"), Policy.load("call-follow-up-drafter")
    assert wider_than(drafter, rep) == []
    assert wider_than(rep, drafter)  # the rep may write leads, tasks...
    widened = wider_than(Policy.load("read-only"), rep)
    assert any(w.startswith("organization.get (read): allow") for w in widened)
    lax = Policy.from_dict(
        {"name": "lax", "grants": {"activity.email": "write"}, "limits": {"per_run": {"writes": 9}}}
    )
    problems = wider_than(lax, drafter)
    assert any("status is not held to" in p for p in problems)
    assert any(p.startswith("limits.per_run.writes: 9 > 1") for p in problems)


@pytest.mark.parametrize(
    "name", ["follow-up-on-status-change", "won-deal-handoff", "stale-opportunity-nudge"]
)
def test_a_ported_rules_policy_is_no_wider_than_the_hand_written_one(name: str) -> None:
    derived = packaged_workflows()[name].load_policy()
    assert wider_than(derived, Policy.load(name)) == []
    assert wider_than(Policy.load(name), derived)  # and strictly narrower
