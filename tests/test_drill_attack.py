"""Guard under attack, short version: the injection suite with the adversary model, random
calls under every shipped policy, and random policies attacked through the client, the
agent, a workflow and the MCP gateway. No forbidden call reaches the simulator and the guard
agrees with the drill's independent oracle; a guard that lets everything through is caught.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

import closeguard.drills.attack as attack
from closeguard.cli._app import app
from closeguard.drills import attack_drill
from closeguard.drills._oracle import Oracle, Probe
from closeguard.drills.attack import ENTRY_POINTS
from closeguard.guardrails.decision import Decision, Guard
from closeguard.guardrails.policy import shipped_policies
from closeguard.store import Store
from closeguard.tools.catalog import BY_NAME


async def test_no_forbidden_call_reaches_the_simulator(store: Store) -> None:
    figures = await attack_drill(store, calls=20, policies=4, policy_calls=15)
    assert figures.attacks >= 10 and figures.attacks_succeeded == 0
    assert figures.reached == figures.escaped == 0
    assert figures.mismatches == 0, figures.findings
    assert figures.blocked > figures.tried // 4
    assert set(figures.entry_points) == set(ENTRY_POINTS)
    for name, entry in figures.entry_points.items():
        assert entry.tried > 0 and entry.blocked > 0 and entry.allowed > 0, name
        assert entry.escaped == entry.mismatches == 0, name
        assert entry.tried > entry.unjudged + entry.invalid, name
    asked = {name: e.approvals for name, e in figures.entry_points.items()}
    assert all(asked.values()), asked
    assert sum(e.approved for e in figures.entry_points.values()) > 0


def _lenient(original: Callable[..., Decision]) -> Callable[..., Decision]:
    def decide(self: Guard, *args: Any, **kwargs: Any) -> Decision:
        decision = original(self, *args, **kwargs)
        if decision.endpoint is None:
            return decision
        return dataclasses.replace(decision, outcome="allow")

    return decide


async def test_a_guard_that_lets_everything_through_is_caught(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drill's figures come from the oracle and the simulator, not from the guard."""
    monkeypatch.setattr(Guard, "check", _lenient(Guard.check))
    monkeypatch.setattr(Guard, "decide_request", _lenient(Guard.decide_request))
    figures = await attack_drill(store, calls=10, policies=3, policy_calls=15, trials=0)
    assert figures.reached > 0 and figures.mismatches > 0 and figures.findings
    for name, entry in figures.entry_points.items():
        assert entry.escaped > 0 and entry.mismatches >= entry.escaped, name


def _probe(name: str, path: str, body: dict[str, Any] | None = None, **params: str) -> Probe:
    ep = BY_NAME[name]
    return Probe(ep.method, path, ep, body=body, params=params)


def test_the_oracle_follows_the_documented_rules() -> None:
    spec = {
        "grants": {"activity": "write", "lead": "read", "activity.note": "destructive"},
        "deny": ["activity.call"],
        "approve": ["destructive"],
        "constraints": {"task.create": {"lead_id": {"scope": "triggered"}}},
        "limits": {"per_run": {"writes": 1}},
    }
    oracle = Oracle(spec, frozenset({"lead_a"}))
    email = "/activity/email/"
    assert oracle.judge(_probe("activity.email.create", email, {"status": "outbox"})) == "deny"
    assert oracle.judge(_probe("activity.call.list", "/activity/call/")) == "deny"
    assert oracle.judge(_probe("activity.note.delete", "/activity/note/n1/")) == "approve"
    assert oracle.judge(_probe("lead.get", "/lead/lead_a/")) == "allow"
    assert oracle.judge(_probe("lead.update", "/lead/lead_a/", {"name": "x"})) == "deny"
    assert oracle.judge(_probe("task.create", "/task/", {"lead_id": "lead_a"})) == "deny"
    draft = _probe("activity.email.create", email, {"status": "draft"})
    assert oracle.expect(draft, False) == ("allow", False)
    assert oracle.expect(draft, False) == ("deny", False), "per_run writes: 1 is spent"
    assert oracle.expect(_probe("lead.get", "/lead/lead_b/"), False) == ("allow", False)


def test_the_oracle_gives_back_the_units_of_a_write_refused_for_a_missing_object() -> None:
    """Close refused it (merged or deleted): the run may make the write again elsewhere,
    but the call still counts."""
    spec = {"grants": {"*": "write"}, "limits": {"per_run": {"writes": 1, "calls": 3}}}
    oracle = Oracle(spec, frozenset({"lead_a"}))
    gone = _probe("task.create", "/task/", {"lead_id": "lead_gone"})
    task = _probe("task.create", "/task/", {"lead_id": "lead_a"})
    read = _probe("data.search", "/data/search/", {"query": {}})
    assert oracle.expect(gone, False) == ("allow", False)
    oracle.refused_missing(gone)
    assert oracle.expect(task, False) == ("allow", False), "the refused write came back"
    assert oracle.expect(task, False) == ("deny", False), "per_run writes: 1 is spent"
    oracle.refused_missing(task)
    assert oracle.expect(task, False) == ("deny", False), "a refused call gives nothing back"
    assert oracle.expect(read, False) == ("allow", False)
    oracle.refused_missing(read)
    assert oracle.expect(read, False) == ("deny", False), "per_run calls: 3 is spent"


async def test_writes_to_missing_objects_do_not_make_the_drill_cry_escape(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: random calls write to ids that are not there (404, or 400 "does not
    exist"), and the guard gives their per-run write units back (following a merge); the
    oracle did not, so later writes it thought over the limit were counted as escapes."""
    spec = {"grants": {"*": "write"}, "limits": {"per_run": {"writes": 2}}}
    monkeypatch.setattr(attack, "random_policy", lambda rng, name: {"name": name, **spec})
    refunds: list[str] = []
    original = Oracle.refused_missing

    def refused_missing(self: Oracle, probe: Probe) -> None:
        refunds.append(probe.path)
        original(self, probe)

    monkeypatch.setattr(Oracle, "refused_missing", refused_missing)
    figures = await attack_drill(store, calls=1, policies=2, policy_calls=40, trials=0)
    assert figures.reached == figures.escaped == 0, figures.findings
    assert figures.mismatches == 0, figures.findings
    assert len(refunds) >= 8, refunds
    for name, entry in figures.entry_points.items():
        assert entry.allowed > 2 and entry.blocked > 0, name


def test_the_oracle_checks_lead_scope_and_leaves_what_it_cannot_judge() -> None:
    spec = {
        "grants": {"*": "write"},
        "constraints": {
            "task.create": {"lead_id": {"scope": "triggered"}},
            "task.list": {"is_complete": {"in": [True]}},
        },
        "limits": {"per_window": {"window": "1h", "writes": 5}},
    }
    mine = Oracle(spec, frozenset({"lead_a"}))
    nobody = Oracle(spec, None)
    ours = _probe("task.create", "/task/", {"lead_id": "lead_a"})
    theirs = _probe("task.create", "/task/", {"lead_id": "lead_b"})
    assert mine.judge(ours) == "allow" and mine.judge(theirs) == "deny"
    assert nobody.judge(ours) == "deny"
    assert mine.judge(_probe("task.create", "/task/", {})) == "deny"
    assert mine.judge(_probe("task.list", "/task/", is_complete="true")) == "unjudged"
    assert mine.expect(ours, False) == ("unjudged", False), "a per-window limit applies"


def test_the_drill_command_prints_the_figures() -> None:
    args = ["drill", "attack", "--calls", "5", "--policies", "2", "--policy-calls", "5"]
    result = CliRunner().invoke(app, [*args, "--trials", "0", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["reached"] == row["escaped"] == row["mismatches"] == 0
    assert row["tried"] == len(shipped_policies()) * 5 + 2 * 5 * len(ENTRY_POINTS)
    assert set(row["entry_points"]) == set(ENTRY_POINTS)
    table = CliRunner().invoke(app, [*args[:4], "--policies", "1", "--trials", "0"])
    assert table.exit_code == 0, table.output
    assert "random calls per entry point" in table.output and "workflow" in table.output
