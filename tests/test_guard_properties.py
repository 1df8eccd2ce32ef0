"""Property tests: the guard's decisions match a small reference written here, and no call
the reference denies (or holds for approval) ever reaches the backend.

The reference re-implements the documented rules from scratch (it shares no code with the
guard): deny entries first (endpoint name, resource or ancestor, access level at or above,
``*``), then the most specific grant (``a.b`` before ``a`` before ``*``) must be at least
the call's access, then the email-status constraint, then approve entries. Access comes
from the catalog's declared level, raised to destructive for an email whose status sends.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from closeguard.guardrails import Guard, Guarded, Policy, RunContext
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import ENDPOINTS, RESOURCES, classify
from closeguard.tools.errors import ApprovalRequired, CloseAPIError, ConfigError, PolicyViolation

LEVELS = ["read", "write", "destructive"]
EMAIL_STATUSES = ["inbox", "draft", "scheduled", "outbox", "sent"]
PARENTS = sorted({r.split(".")[0] for r in RESOURCES} | set(RESOURCES))
ENTRIES = [ep.name for ep in ENDPOINTS] + PARENTS + LEVELS + ["*"]
UNKNOWN_PATHS = [
    ("GET", "/nope/"),
    ("POST", "/lead/lead_1/extra/"),
    ("PATCH", "/lead/lead_1/"),
    ("DELETE", "/lead/"),
    ("GET", "/activity/sms/"),
]


# -- the reference --------------------------------------------------------------------------


def ref_access(ep_name: str, declared: str, body: dict[str, Any]) -> str:
    if ep_name in ("activity.email.create", "activity.email.update") and body.get("status") in (
        "outbox",
        "scheduled",
    ):
        return "destructive"
    return declared


def ref_covers(entry: str, ep_name: str, resource: str, access: str) -> bool:
    if entry in ("*", ep_name):
        return True
    if resource == entry or resource.startswith(entry + "."):
        return True
    return entry in LEVELS and LEVELS.index(access) >= LEVELS.index(entry)


def ref_decide(
    spec: dict[str, Any], ep_name: str, resource: str, access: str, body: dict[str, Any]
) -> tuple[str, str]:
    deny = list(dict.fromkeys(spec.get("deny", [])))
    approve = list(dict.fromkeys(spec.get("approve", [])))
    for entry in deny:
        if ref_covers(entry, ep_name, resource, access):
            return "deny", f"deny#{entry}"
    grants = spec.get("grants", {})
    best = None
    candidates = [k for k in grants if k != "*" and (resource == k or resource.startswith(k + "."))]
    if candidates:
        best = max(candidates, key=lambda k: k.count(".") + 1)
    elif "*" in grants:
        best = "*"
    if best is None:
        return "deny", "grants"
    if LEVELS.index(grants[best]) < LEVELS.index(access):
        return "deny", f"grants.{best}"
    allowed_status = spec.get("constraints", {}).get(ep_name, {}).get("status", {}).get("in")
    if allowed_status is not None and "status" in body and body["status"] not in allowed_status:
        return "deny", f"constraints.{ep_name}.status"
    for entry in approve:
        if ref_covers(entry, ep_name, resource, access):
            return "approve", f"approve#{entry}"
    return "allow", f"grants.{best}"


# -- strategies -----------------------------------------------------------------------------


policy_specs = st.fixed_dictionaries(
    {
        "grants": st.dictionaries(
            st.sampled_from([*PARENTS, "*", "*", "*"]),
            st.sampled_from([*LEVELS, "write", "destructive"]),
            min_size=1,
            max_size=6,
        ),
        "deny": st.lists(st.sampled_from(ENTRIES), max_size=2),
        "approve": st.lists(
            st.sampled_from(ENTRIES) | st.sampled_from(LEVELS + PARENTS), max_size=3
        ),
        "email_status": st.none()
        | st.none()
        | st.lists(st.sampled_from(EMAIL_STATUSES), min_size=1, max_size=3, unique=True),
    }
)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    if draw(st.sampled_from([False] * 19 + [True])):
        method, path = draw(st.sampled_from(UNKNOWN_PATHS))
        return method, path, {}, {}
    ep = draw(st.sampled_from(ENDPOINTS))
    ids = {p: draw(st.sampled_from(["lead_a1", "oppo_b2", "x9", "acti_3"])) for p in ep.path_params}
    path = ep.path.format(**ids)
    body: dict[str, Any] = {}
    if ep.method in ("POST", "PUT") and ep.body_model is not None:
        if ep.resource == "activity.email":
            status = draw(st.sampled_from([None, *EMAIL_STATUSES]))
            body = {"lead_id": "lead_a1", "subject": "hi"}
            if status is not None:
                body["status"] = status
        else:
            body = draw(
                st.sampled_from([{}, {"name": "Acme"}, {"lead_id": "lead_a1", "text": "call back"}])
            )
    params = {"lead_id": "lead_a1"} if ep.name == "task.bulk_update" else {}
    return ep.method, path, body, params


def build(spec: dict[str, Any]) -> tuple[dict[str, Any], Policy | None]:
    """The YAML-ish dict, and the loaded policy (None if the loader refused it)."""
    data: dict[str, Any] = {
        "name": "prop",
        "grants": spec["grants"],
        "deny": spec["deny"],
        "approve": spec["approve"],
    }
    if spec["email_status"] is not None:
        data["constraints"] = {"activity.email.create": {"status": {"in": spec["email_status"]}}}
    try:
        return data, Policy.from_dict(data)
    except ConfigError as exc:
        assert "never allows activity.email.create" in str(exc), exc
        for access in ("write", "destructive"):
            outcome, _ = ref_decide(
                {**data, "constraints": {}}, "activity.email.create", "activity.email", access, {}
            )
            assert outcome == "deny", "loader refused a constraint on a reachable endpoint"
        return data, None


def by_entry(policy: Policy, rule: str) -> str:
    """A deny/approve rule label (file and line) as the reference names it: kind#entry."""
    for entry in (*policy.deny_rules, *policy.approve_rules):
        if entry.label == rule:
            return f"{entry.kind}#{entry.match}"
    return rule


def reference_for(
    data: dict[str, Any], method: str, path: str, body: dict[str, Any]
) -> tuple[str, str]:
    for ep in ENDPOINTS:
        if ep.method != method:
            continue
        pattern = ep.path.replace("{id}", "[^/]+")
        import re

        literal = next((e for e in ENDPOINTS if e.method == method and e.path == path), None)
        if literal is not None and literal is not ep:
            continue
        if re.fullmatch(pattern, path):
            access = ref_access(ep.name, ep.access, body)
            return ref_decide(data, ep.name, ep.resource, access, body)
    return "deny", "catalog"


# -- the decision property -----------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(spec=policy_specs, call=calls())
def test_decision_matches_reference(spec: dict[str, Any], call: tuple[Any, ...]) -> None:
    method, path, body, params = call
    data, policy = build(spec)
    if policy is None:
        return
    decision, _ = Guard(policy).check_request(method, path, body, params)
    event(f"{decision.outcome} {decision.rule.split('[')[0].split('.')[0]}")
    assert (decision.outcome, by_entry(policy, decision.rule)) == reference_for(
        data, method, path, body
    )


def test_reference_sees_every_endpoint_and_level() -> None:
    """The strategies reach the whole catalog, both email escalations included."""
    seen = {(ep.name, ep.access) for ep in ENDPOINTS}
    for status in EMAIL_STATUSES:
        call = classify("POST", "/activity/email/", {"status": status})
        seen.add((call.name, call.access))
    assert ("activity.email.create", "destructive") in seen
    assert len({name for name, _ in seen}) == len(ENDPOINTS)


# -- nothing denied reaches the backend ----------------------------------------------------


class SimBackend:
    """The in-process simulator; its request counter and Event Log are the proof."""

    def __init__(self) -> None:
        self.sim = Simulator(seed=7, leads=3)

    @property
    def count(self) -> int:
        return self.sim.request_count["total"]

    @property
    def events(self) -> int:
        return len(self.sim.events)


@pytest.fixture(scope="module")
def prop_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = Path(tmp_path_factory.mktemp("prop")) / "store.db"
    return Store(f"sqlite:///{path}")


_counter = itertools.count()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=policy_specs, batch=st.lists(calls(), min_size=1, max_size=4))
def test_denied_calls_never_reach_the_backend(
    prop_store: Store, spec: dict[str, Any], batch: list[tuple[Any, ...]]
) -> None:
    data, policy = build(spec)
    if policy is None:
        return
    backend = SimBackend()
    run_id = f"prop-{next(_counter)}"

    async def go() -> None:
        client = backend.sim.client(
            policy=Guarded(policy, store=prop_store), actor="prop", run_id=run_id
        )
        async with client:
            for method, path, body, params in batch:
                expected, rule = reference_for(data, method, path, body)
                before, events_before = backend.count, backend.events
                try:
                    await client.request(method, path, json=body or None, params=params or None)
                    outcome = "allow"
                except PolicyViolation as exc:
                    outcome = "deny"
                    assert by_entry(policy, exc.rule) == rule
                except ApprovalRequired as exc:
                    outcome = "approve"
                    assert exc.approval_id.startswith("appr_")
                except CloseAPIError:
                    outcome = "allow"  # reached the backend, which refused it
                assert outcome == expected, (method, path, body)
                reached = backend.count - before
                assert reached == (1 if expected == "allow" else 0)
                if expected != "allow":
                    assert backend.events == events_before

    asyncio.run(go())


# -- remembered decisions ------------------------------------------------------------------


@st.composite
def email_calls(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """The argument-dependent calls, on few paths: emails, drafts or sent."""
    method, path = draw(
        st.sampled_from([("POST", "/activity/email/"), ("PUT", "/activity/email/acti_3/")])
    )
    body: dict[str, Any] = {"lead_id": "lead_a1"}
    status = draw(st.sampled_from([None, *EMAIL_STATUSES]))
    if status is not None:
        body["status"] = status
    return method, path, body, {}


@settings(max_examples=200, deadline=None)
@given(spec=policy_specs, batch=st.lists(calls() | email_calls(), min_size=2, max_size=30))
def test_remembered_decisions_match_a_fresh_check(
    spec: dict[str, Any], batch: list[tuple[Any, ...]]
) -> None:
    """``decide_request`` remembers a decision only where no argument can change it: after
    any sequence of calls on one guard (the same paths with other bodies, such as email
    statuses that send), it answers as a fresh guard and the reference do."""
    data, policy = build(spec)
    if policy is None:
        return
    guard = Guard(policy)
    for method, path, body, params in batch * 2:
        decision = guard.decide_request(method, path, body, params)
        assert decision == Guard(policy).check_request(method, path, body, params)[0]
        assert (decision.outcome, by_entry(policy, decision.rule)) == reference_for(
            data, method, path, body
        )


def test_remembered_decisions_leave_arguments_and_lead_scope_to_every_call() -> None:
    policy = Policy.from_yaml(
        """
name: scoped
grants: {"*": destructive}
approve: [destructive]
constraints:
  task.update:
    text: {required: true}
  task.create:
    lead_id: {scope: triggered}
"""
    )
    guard = Guard(policy)
    mine, theirs = RunContext(triggered_leads=frozenset({"lead_a"})), RunContext()
    for _ in range(2):
        assert guard.decide_request("GET", "/lead/lead_a/").allowed
        email = "/activity/email/acti_1/"
        assert guard.decide_request("PUT", email, {"status": "draft"}).allowed
        assert guard.decide_request("PUT", email, {"status": "outbox"}).needs_approval
        assert guard.decide_request("PUT", "/task/task_1/", {"text": "x"}).allowed
        assert guard.decide_request("PUT", "/task/task_1/", {}).denied
        task = {"lead_id": "lead_a", "text": "call"}
        assert guard.decide_request("POST", "/task/", task, context=mine).allowed
        assert guard.decide_request("POST", "/task/", task, context=theirs).denied
        other = {**task, "lead_id": "lead_b"}
        assert guard.decide_request("POST", "/task/", other, context=mine).denied
    assert set(guard._routes) == {("GET", "/lead/lead_a/")}
