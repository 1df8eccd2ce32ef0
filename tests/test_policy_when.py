"""Rules on values: ``when:`` on ``approve`` and ``deny`` entries.

A call that does not meet the condition goes on as if the entry were not there; a field
the call does not send does not match; status labels and types are read from Close once
(audited) and cached; the decision of an endpoint without conditions stays remembered.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from closeguard.agent.prompt import policy_summary
from closeguard.cli import app
from closeguard.guardrails import AuditLog, Guard, Guarded, Policy
from closeguard.guardrails.decision import STATUS_REFRESH
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.client import CloseClient
from closeguard.tools.errors import ApprovalRequired, ConfigError, PolicyViolation

DEALS = """\
name: deals
grants: {"*": write}
approve:
  - endpoint: opportunity.update
    when: {any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]}
deny:
  - endpoint: lead.update
    when: {status_label: {in: [Bad Fit]}}
approvers:
  opportunity.update: [sales-manager]
"""
STATUSES = {
    "stat_won": {"label": "Won", "type": "won"},
    "stat_open": {"label": "Discovery", "type": "active"},
    "stat_bad": {"label": "Bad Fit"},
}


def _guard() -> Guard:
    guard = Guard(Policy.from_yaml(DEALS, file="deals.yaml"))
    guard.learn_statuses(STATUSES)
    return guard


def _update(body: dict[str, Any]) -> Any:
    return _guard().check(classify("PUT", "/opportunity/oppo_1/", body))


def test_approve_only_above_the_value_or_when_won() -> None:
    big = _update({"value": 6_000_000})
    assert big.outcome == "approve" and big.approvers == ("sales-manager",)
    assert big.rule == "approve[deals.yaml:4]"
    assert _update({"value": 5_000_000}).outcome == "approve"
    assert _update({"value": 4_999_999}).outcome == "allow"
    assert _update({"status_id": "stat_won"}).outcome == "approve"
    assert _update({"status_id": "stat_open", "value": 10}).outcome == "allow"
    assert _update({"confidence": 50}).outcome == "allow", "a field not sent does not match"
    assert _update({"status_id": "stat_unknown"}).outcome == "allow"


def test_a_conditional_deny_refuses_only_matching_calls() -> None:
    guard = _guard()
    bad = guard.check(classify("PUT", "/lead/lead_1/", {"status_id": "stat_bad"}))
    assert bad.outcome == "deny" and bad.rule == "deny[deals.yaml:7]"
    ok = guard.check(classify("PUT", "/lead/lead_1/", {"status_id": "stat_open"}))
    assert ok.outcome == "allow"


def test_conditional_endpoints_are_not_remembered_by_path() -> None:
    guard = _guard()
    path = "/opportunity/oppo_1/"
    assert guard.decide_request("PUT", path, {"value": 1}).outcome == "allow"
    assert guard.decide_request("PUT", path, {"value": 9_000_000}).outcome == "approve"
    assert guard.decide_request("PUT", path, {"value": 1}).outcome == "allow"
    guard.decide_request("GET", "/lead/lead_1/")
    assert ("GET", "/lead/lead_1/") in guard._routes
    assert ("PUT", path) not in guard._routes


def test_an_unconditional_entry_later_in_the_list_keeps_deciding() -> None:
    policy = Policy.from_yaml(
        "grants: {'*': write}\napprove:\n"
        "  - {endpoint: opportunity.update, when: {value: {min: 100}}, approvers: [vp]}\n"
        "  - opportunity\napprovers: {opportunity: [rep-lead]}\n"
    )
    guard = Guard(policy)
    big = guard.check(classify("PUT", "/opportunity/o/", {"value": 500}))
    small = guard.check(classify("PUT", "/opportunity/o/", {"value": 5}))
    assert big.approvers == ("vp",) and small.approvers == ("rep-lead",)


@pytest.mark.parametrize(
    ("when", "line", "words"),
    [
        ("{valeu: {min: 1}}", 4, "unknown field 'valeu'"),
        ("{value: {above: 1}}", 4, "unknown matcher 'above'"),
        ("{value: {min: ten}}", 4, "value.min must be a number"),
        ("[value]", 4, "a condition is a mapping"),
    ],
)
def test_condition_mistakes_name_file_and_line(when: str, line: int, words: str) -> None:
    text = f"grants: {{'*': write}}\napprove:\n  - endpoint: opportunity.update\n    when: {when}\n"
    with pytest.raises(ConfigError) as info:
        Policy.from_yaml(text, file="p.yaml")
    assert info.value.line == line and words in str(info.value), str(info.value)


def test_explain_prints_the_condition_as_written(tmp_path: Any) -> None:
    path = tmp_path / "deals.yaml"
    path.write_text(DEALS)
    result = CliRunner().invoke(app, ["policy", "explain", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["endpoint"], r["access"]): r for r in json.loads(result.output)}
    update = rows[("opportunity.update", "write")]
    assert update["outcome"] == "allow"
    assert update["when"] == [
        "approve when {any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]} "
        "(approvers: sales-manager) [approve[deals.yaml:4]]"
    ]
    table = CliRunner().invoke(app, ["policy", "explain", str(path)])
    assert table.exit_code == 0 and "5000000" in table.output
    assert "5e+06" not in table.output


async def test_statuses_are_read_once_through_the_guard_and_audited(store: Store) -> None:
    sim = Simulator(seed=3, leads=4)
    guarded = Guarded(Policy.from_yaml(DEALS, file="deals.yaml"), store=store)
    async with sim.client() as raw:
        won = next(
            s["id"] for s in (await raw.get("/status/opportunity/"))["data"] if s["type"] == "won"
        )
        deals = (await raw.get("/opportunity/", params={"_limit": 2}))["data"]
    before = sim.request_count["total"]
    async with sim.client(policy=guarded, actor="bot") as client:
        with pytest.raises(ApprovalRequired):
            await client.request("PUT", f"/opportunity/{deals[0]['id']}/", json={"status_id": won})
        await client.request("PUT", f"/opportunity/{deals[1]['id']}/", json={"confidence": 10})
        with pytest.raises(ApprovalRequired):
            await client.request("PUT", f"/opportunity/{deals[1]['id']}/", json={"value": 9e6})
    # two status reads (lead, opportunity), then only the one allowed update
    assert sim.request_count["total"] - before == 3
    rows = AuditLog(store).rows()
    reads = [r for r in rows if r["rule"] == "when.statuses"]
    assert [r["path"] for r in reads] == ["/status/lead/", "/status/opportunity/"]


async def test_a_failed_status_read_refuses_the_call(store: Store) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": "down"})

    client = CloseClient(
        "key",
        transport=httpx.MockTransport(answer),
        policy=Guarded(Policy.from_yaml(DEALS), store=store),
    )
    async with client:
        with pytest.raises(PolicyViolation, match=r"when\.statuses"):
            await client.request("PUT", "/opportunity/o/", json={"status_id": "stat_x"})


# -- property: a when rule decides as a small reference evaluator ------------------------

FIELDS = ("value", "confidence", "status_id", "note")
values = st.one_of(
    st.none(),
    st.integers(-10, 10_000_000),
    st.sampled_from(["stat_won", "stat_open", "x", "12", ""]),
    st.booleans(),
)
leaf = (
    st.builds(
        lambda f, kind, v: {f: {kind: v}},
        st.sampled_from(FIELDS),
        st.sampled_from(["min", "max"]),
        st.integers(-5, 6_000_000),
    )
    | st.builds(
        lambda f, vs: {f: {"in": vs}},
        st.sampled_from([*FIELDS, "status_type"]),
        st.lists(st.sampled_from(["stat_won", "won", "active", "x", 12]), min_size=1, max_size=3),
    )
    | st.builds(lambda f, r: {f: {"required": r}}, st.sampled_from(FIELDS), st.booleans())
)
conditions = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def ref_holds(cond: dict[str, Any], data: dict[str, Any]) -> bool:
    ((key, arg),) = cond.items()
    if key == "all":
        return all(ref_holds(c, data) for c in arg)
    if key == "any":
        return any(ref_holds(c, data) for c in arg)
    if key == "not":
        return not ref_holds(arg, data)
    ((kind, expected),) = arg.items()
    value = data.get(key)
    if kind == "required":
        return (value is not None) == expected
    if value is None:
        return False
    if kind == "in":
        return any(
            (value is e)
            if isinstance(value, bool) or isinstance(e, bool)
            else (_num(value) == e if isinstance(e, int) else value == e)
            for e in expected
        )
    number = _num(value)
    return number is not None and (number >= expected if kind == "min" else number <= expected)


@settings(max_examples=300, deadline=None)
@given(cond=conditions, body=bodies, kind=st.sampled_from(["approve", "deny"]))
def test_a_when_rule_decides_as_the_reference(
    cond: dict[str, Any], body: dict[str, Any], kind: str
) -> None:
    policy = Policy.from_dict(
        {"grants": {"*": "write"}, kind: [{"endpoint": "opportunity.update", "when": cond}]}
    )
    guard = Guard(policy)
    guard.learn_statuses(STATUSES)
    data = dict(body)
    status = STATUSES.get(str(body.get("status_id")))
    if status and "type" in status:
        data["status_type"] = status["type"]
    expected = kind if ref_holds(cond, data) else "allow"
    call = classify("PUT", "/opportunity/oppo_1/", body)
    assert guard.check(call).outcome == expected
    assert guard.decide_request("PUT", "/opportunity/oppo_1/", body).outcome == expected


def test_the_agents_prompt_tells_conditions_apart_from_always() -> None:
    policy = Policy.from_yaml(DEALS)
    guard = Guard(policy)
    summary = policy_summary(policy, [], guard)
    assert "Always denied" not in summary
    assert "Denied only when the arguments match: lead.update when {status_label: " in summary
    assert (
        "Needs approval only when the arguments match: opportunity.update when {any: "
        "[{value: {min: 5000000}}, {status_type: {in: [won]}}]}" in summary
    )


async def test_a_status_added_since_the_read_is_read_again(store: Store) -> None:
    sim = Simulator(seed=3, leads=4)
    guarded = Guarded(Policy.from_yaml(DEALS, file="deals.yaml"), store=store)
    async with sim.client() as raw:
        deal = (await raw.get("/opportunity/", params={"_limit": 1}))["data"][0]
    path = f"/opportunity/{deal['id']}/"
    async with sim.client(policy=guarded, actor="bot") as client:
        await client.request("PUT", path, json={"confidence": 10})
        sim.state.add(
            "opportunity_statuses", {"id": "stat_bigwin", "label": "Big win", "type": "won"}
        )
        guard = guarded.guard
        guard.statuses_at -= STATUS_REFRESH  # the statuses read a minute ago
        with pytest.raises(ApprovalRequired):
            await client.request("PUT", path, json={"status_id": "stat_bigwin"})
        guard.statuses_at -= STATUS_REFRESH
        await client.request("PUT", path, json={"confidence": 20})  # known ids: no new read
    reads = [r for r in AuditLog(store).rows() if r["rule"] == "when.statuses"]
    assert len(reads) == 4
