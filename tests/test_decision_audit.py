"""Every decision is a row of its own in the audit chain, whatever the channel (the chat
prompt, an edit, the CLI, expiry; the console, the API, single sign-on and MCP elicitation
have theirs in their own test files), and only a person holding a listed role answers."""

from __future__ import annotations

import json
import os
import pwd
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.types import Command
from typer.testing import CliRunner

from closeguard.agent.testing import call, scripted, turn
from closeguard.cli import app
from closeguard.guardrails import Account, Accounts, Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.errors import ApprovalError, ApprovalForbidden
from tests._agent import TASKS_POLICY, rig

runner = CliRunner()


def decisions(store: Store) -> list[dict[str, Any]]:
    """The chain's decision rows, arguments decoded, oldest first."""
    rows = [dict(r) for r in AuditLog(store).rows() if r["method"] == "DECIDE"]
    return [{**r, "args": json.loads(r["args"])} for r in rows]


def ask(approvals: Approvals, lead: str, roles: tuple[str, ...] = ("admin",), **kw: Any) -> str:
    return approvals.request(
        classify("DELETE", f"/lead/{lead}/"),
        method="DELETE",
        path=f"/lead/{lead}/",
        actor="bot",
        approvers=roles,
        **kw,
    ).id


async def _agent_asks(store: Store, answer: Any) -> tuple[str, list[dict[str, Any]]]:
    model = scripted(turn("", call("task_create", lead_id="L", text="a")), turn("ok"))
    async with rig(store, TASKS_POLICY, model) as r:
        lead = r.lead_ids()[0]
        for c in model.turns[0]["tool_calls"]:
            c["args"]["lead_id"] = lead
        first = await r.ask("go")
        [asked] = first["__interrupt__"]
        if isinstance(answer, dict) and answer.get("action") == "edit":
            answer = {**answer, "args": {"lead_id": lead, "text": "edited"}}
        await r.resume(Command(resume={asked.id: answer}))
    return str(asked.value["approval_id"]), decisions(store)


@pytest.mark.parametrize(
    ("answer", "decision"),
    [("approve", "approved"), ({"action": "reject", "message": "not now"}, "rejected")],
)
async def test_the_chat_prompt_answer_is_audited(store: Store, answer: Any, decision: str) -> None:
    approval_id, rows = await _agent_asks(store, answer)
    [row] = rows
    assert row["approval_id"] == approval_id and row["decision"] == decision
    assert row["args"]["via"] == "prompt" and row["args"]["channel"] == "agent"
    assert row["args"]["call_hash"] == Approvals(store).get(approval_id).call_hash
    if decision == "rejected":
        assert row["reason"] == "not now"


async def test_an_edit_is_audited_as_edited_then_the_new_call_approved(store: Store) -> None:
    original, rows = await _agent_asks(store, {"action": "edit"})
    approved = next(r for r in rows if r["decision"] == "approved")
    edited = next(r for r in rows if r["decision"] == "edited")
    assert edited["approval_id"] == original
    assert edited["args"]["replaced_by"] == approved["approval_id"] != original
    assert approved["args"]["edited_from"] == original
    assert Approvals(store).get(original).status == "rejected"


def test_the_cli_decides_as_an_account_with_the_role_and_records_the_os_user(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "somebody-else")
    approvals, accounts = Approvals(store), Accounts(store)
    accounts.add("maria", roles=["sales-manager"])
    accounts.add("omar", roles=["rep"])
    accounts.add("zoe", roles=["sales-manager"])
    accounts.disable("zoe")
    deal = ask(approvals, "lead_1", ("sales-manager",))

    refused = runner.invoke(app, ["approvals", "approve", deal, "--as", "omar"])
    assert refused.exit_code == 1 and "sales-manager" in refused.stderr
    disabled = runner.invoke(app, ["approvals", "approve", deal, "--as", "zoe"])
    assert disabled.exit_code == 1 and "disabled" in disabled.stderr
    assert approvals.get(deal).status == "pending" and decisions(store) == []

    done = runner.invoke(app, ["approvals", "reject", deal, "--as", "maria", "--note", "no"])
    assert done.exit_code == 0, done.output
    [row] = decisions(store)
    assert row["actor"] == "maria" and row["decision"] == "rejected" and row["reason"] == "no"
    assert row["args"]["via"] == "cli" and row["args"]["channel"] == "cli"
    assert row["args"]["os_user"] == pwd.getpwuid(os.getuid()).pw_name != "somebody-else"


def test_expiry_is_audited_once_and_then_nobody_can_answer(store: Store) -> None:
    now = [1000.0]
    approvals = Approvals(store, clock=lambda: now[0])
    late = ask(approvals, "lead_1", ttl=60)
    answered = ask(approvals, "lead_2", ttl=60)
    approvals.approve(answered, by="ana", via="token", channel="console")
    assert approvals.expire() == ()
    now[0] += 61
    [expired] = approvals.expire()
    assert expired.id == late and expired.status == "expired"
    assert approvals.expire() == (), "recorded once"
    assert {a.id for a in approvals.list("expired")} == {answered, late}
    with pytest.raises(ApprovalError, match="expired, not pending"):
        approvals.approve(late, by="ana")
    rows = decisions(store)
    assert [(r["decision"], r["actor"], r["args"]["via"]) for r in rows] == [
        ("approved", "ana", "token"),
        ("expired", "closeguard", "expiry"),
    ]
    assert AuditLog(store).verify().ok


def test_approvals_list_records_what_expired_meanwhile(tmp_path: Path) -> None:
    """``approvals list`` (as the console's page and the runtime's workers) records what
    expired meanwhile."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store(url)
    ask(Approvals(store), "lead_1", ttl=0.0)
    listed = runner.invoke(app, ["--store", url, "approvals", "list", "--all", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [a["status"] for a in json.loads(listed.stdout)] == ["expired"]
    assert [r["decision"] for r in decisions(store)] == ["expired"]


ROLES = ("admin", "rep", "sales-manager", "finance")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(
        st.tuples(st.sets(st.sampled_from(ROLES), max_size=3), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    rules=st.lists(st.sets(st.sampled_from(ROLES), min_size=1, max_size=2), min_size=1, max_size=3),
    choices=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.booleans()), max_size=8),
)
def test_answered_iff_the_person_holds_a_listed_role(
    store: Store,
    people: list[tuple[set[str], bool]],
    rules: list[set[str]],
    choices: list[tuple[int, int, bool]],
) -> None:
    """Random people x rules x decisions: a decision lands exactly when the (enabled)
    person holds one of the approval's roles and it is still pending."""
    approvals = Approvals(store)
    persons = [
        Account(f"p{i}", tuple(sorted(roles)), None, disabled, ())
        for i, (roles, disabled) in enumerate(people)
    ]
    run = uuid.uuid4().hex[:8]  # the store outlives one example: fresh calls each time
    ids = [ask(approvals, f"lead_{run}{i}", tuple(sorted(r))) for i, r in enumerate(rules)]
    answered: dict[str, str] = {}
    before = len(decisions(store))
    for who, which, approve in choices:
        person, approval_id = persons[who % len(persons)], ids[which % len(ids)]
        allowed = person.can_answer(rules[which % len(ids)])
        decide = approvals.approve if approve else approvals.reject
        try:
            decide(approval_id, by=person.name, roles=person.roles if not person.disabled else ())
        except ApprovalForbidden:
            assert not allowed
            continue
        except ApprovalError:
            assert allowed and approval_id in answered
            continue
        assert allowed and approval_id not in answered
        answered[approval_id] = person.name
    for approval_id in ids:
        found = approvals.get(approval_id)
        assert found is not None
        assert found.decided_by == answered.get(approval_id)
        assert (found.status == "pending") is (approval_id not in answered)
    assert len(decisions(store)) - before == len(answered)
