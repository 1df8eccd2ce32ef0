"""Decisions: allow, deny (with the rule that denied) or needs approval, for one call.

``Guard(policy)`` precomputes, at load, the decision for every catalog endpoint at every
access level it can take; per call only the constraints of that endpoint are evaluated, so
``check`` is a dict lookup plus a few comparisons. Quotas are counted at the transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from closeguard.guardrails.policy import FieldRule, Policy, possible_access
from closeguard.tools.catalog import (
    ACCESS_RANK,
    ENDPOINTS,
    Call,
    Endpoint,
    access_allows,
    classify,
    resource_ancestors,
)
from closeguard.tools.errors import UnknownEndpoint
from closeguard.tools.models import Access

__all__ = ["Decision", "Guard", "Outcome", "RunContext", "static_decisions"]

Outcome = Literal["allow", "deny", "approve"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guard decided for one call, and which rule decided it."""

    outcome: Outcome
    rule: str
    reason: str
    endpoint: str | None = None
    access: Access | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def denied(self) -> bool:
        return self.outcome == "deny"

    @property
    def needs_approval(self) -> bool:
        return self.outcome == "approve"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "rule": self.rule, "reason": self.reason,
                "endpoint": self.endpoint, "access": self.access}


@dataclass(frozen=True)
class RunContext:
    """Who is calling, in which run, and the leads the run was triggered for (lead scope)."""

    actor: str | None = None
    run_id: str | None = None
    triggered_leads: frozenset[str] | None = None


def _entry_matches(entry: str, ep: Endpoint, access: Access) -> bool:
    if entry in ("*", ep.name) or entry in resource_ancestors(ep.resource):
        return True
    return entry in ACCESS_RANK and ACCESS_RANK[access] >= ACCESS_RANK[entry]


def _static(policy: Policy, ep: Endpoint, access: Access) -> Decision:
    for i, entry in enumerate(policy.deny):
        if _entry_matches(entry, ep, access):
            return Decision("deny", f"deny[{i}]", f"{ep.name} is denied by {entry!r}",
                            ep.name, access)
    level: Access | None = None
    granted_on = ""
    for res in (*resource_ancestors(ep.resource), "*"):
        if res in policy.grants:
            level, granted_on = policy.grants[res], res
            break
    if level is None:
        return Decision("deny", "grants", f"no grant covers resource {ep.resource!r}",
                        ep.name, access)
    if not access_allows(level, access):
        return Decision("deny", f"grants.{granted_on}",
                        f"grant on {granted_on!r} is {level}; {ep.name} here needs {access}",
                        ep.name, access)
    zero = _zero_limit(policy, ep, access)
    if zero is not None:
        return Decision("deny", zero, f"{zero} is 0", ep.name, access)
    for i, entry in enumerate(policy.approve):
        if _entry_matches(entry, ep, access):
            return Decision("approve", f"approve[{i}]",
                            f"{ep.name} ({access}) needs approval by {entry!r}", ep.name, access)
    return Decision("allow", f"grants.{granted_on}", f"granted {level} on {granted_on!r}",
                    ep.name, access)


def _zero_limit(policy: Policy, ep: Endpoint, access: Access) -> str | None:
    for scope, counters in (("per_run", policy.limits.per_run),
                            ("per_window", policy.limits.per_window)):
        checks = (
            ("calls", counters.calls, True),
            ("writes", counters.writes, access != "read"),
            ("destructive", counters.destructive, access == "destructive"),
        )
        for key, limit, applies in checks:
            if applies and limit == 0:
                return f"limits.{scope}.{key}"
        if counters.per_endpoint.get(ep.name) == 0:
            return f"limits.{scope}.per_endpoint.{ep.name}"
    return None


def static_decisions(policy: Policy) -> dict[tuple[str, Access], Decision]:
    """The argument-independent decision for every endpoint at every reachable level."""
    return {
        (ep.name, access): _static(policy, ep, access)
        for ep in ENDPOINTS
        for access in possible_access(ep)
    }


_MISSING = object()


def _from_query(text: str) -> Any:
    """Query strings arrive as text: read numbers and booleans back for comparison."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _value(call: Call, rule: FieldRule) -> Any:
    for loc in rule.locations:
        source: Mapping[str, Any] = (
            call.body if loc == "body" else call.params if loc == "params" else call.path_params
        )
        if rule.field in source:
            value = source[rule.field]
            if loc == "params" and isinstance(value, str) and rule.typed:
                return _from_query(value)
            return value
    return _MISSING


def _violation(rule: FieldRule, value: Any, context: RunContext) -> str | None:
    """Why ``value`` breaks ``rule``, or None."""
    name = f"{rule.endpoint} {rule.field}"
    if value is _MISSING:
        return f"{name} is required" if rule.required else None
    if rule.immutable:
        return f"{name} may not be sent or changed"
    if rule.allowed is not None and value not in rule.allowed:
        return f"{name} {value!r} is not one of {list(rule.allowed)}"
    if rule.min is not None or rule.max is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} {value!r} is not a number"
        if rule.min is not None and value < rule.min:
            return f"{name} {value} is below the minimum {rule.min:g}"
        if rule.max is not None and value > rule.max:
            return f"{name} {value} is above the maximum {rule.max:g}"
    if rule.scope == "triggered":
        leads = context.triggered_leads
        if leads is None:
            return f"{name}: this run has no triggered leads, so nothing is in scope"
        if value not in leads:
            return f"{name} {value!r} is not a lead this run was triggered for"
    return None


_NO_CONTEXT = RunContext()


class Guard:
    """Decides calls for one policy. Pure: no I/O, no state but the precomputed table."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._table = static_decisions(policy)
        self._rules: dict[str, tuple[FieldRule, ...]] = dict(policy.constraints)

    def check(self, call: Call, context: RunContext | None = None) -> Decision:
        """The decision for one classified call (argument rules included)."""
        decision = self._table[(call.endpoint.name, call.access)]
        if decision.outcome == "deny":
            return decision
        rules = self._rules.get(call.endpoint.name)
        if rules:
            ctx = context or _NO_CONTEXT
            for rule in rules:
                why = _violation(rule, _value(call, rule), ctx)
                if why is not None:
                    return Decision("deny", rule.rule, why, call.endpoint.name, call.access)
        return decision

    def check_request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        context: RunContext | None = None,
    ) -> tuple[Decision, Call | None]:
        """Classify a raw request with the catalog, then decide; unknown endpoints deny."""
        try:
            call = classify(method, path, body, params)
        except UnknownEndpoint as exc:
            return Decision("deny", "catalog", str(exc)), None
        return self.check(call, context), call

    def static(self, endpoint: str, access: Access) -> Decision:
        """The decision before arguments, as ``policy explain`` shows it."""
        return self._table[(endpoint, access)]
