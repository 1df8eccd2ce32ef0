"""Decisions: allow, deny (with the rule that denied) or needs approval, for one call.

``Guard(policy)`` precomputes, at load, the decision for every catalog endpoint at every
access level it can take (``static.static_decisions``); per call only the constraints of
that endpoint are evaluated, so ``check`` is a dict lookup plus a few comparisons. Where
nothing can depend on the arguments (no escalation, no constraint), ``decide_request``
remembers the decision by method and path. Quotas are counted at the transport.

``deny`` and ``approve`` entries with a ``when`` condition are checked per call, in their
order, on the call's arguments (path parameters, query and body in one mapping); an
endpoint that such an entry covers never takes the remembered path. ``status_label`` and
``status_type`` come from the statuses the transport taught the guard (``learn_statuses``):
the guard itself does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from closeguard.guardrails.policy import STATUS_FIELDS, Entry, FieldRule, Policy
from closeguard.guardrails.static import (
    Decision,
    Outcome,
    entry_matches,
    possible_access,
    static_decisions,
)
from closeguard.tools.access import Access
from closeguard.tools.catalog import ENDPOINTS, Call, classify
from closeguard.tools.errors import UnknownEndpoint

__all__ = [
    "STATUS_REFRESH",
    "Decision",
    "Guard",
    "Outcome",
    "RunContext",
    "call_arguments",
    "static_decisions",
]


@dataclass(frozen=True)
class RunContext:
    """Who is calling, in which run, and the leads the run was triggered for (lead scope)."""

    actor: str | None = None
    run_id: str | None = None
    triggered_leads: frozenset[str] | None = None


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
STATUS_REFRESH = 60.0
"""Seconds before statuses are read again for a status id they do not know."""
_ROUTES_MAX = 4096


def call_arguments(call: Call) -> dict[str, Any]:
    """What a ``when`` condition reads: path parameters, query and body in one mapping."""
    return {**call.path_params, **call.params, **call.body}


@dataclass(frozen=True)
class _Conditional:
    """The ``when`` entries covering one endpoint at one access level, in policy order.

    ``approve`` stops at the first unconditional approve entry (it decides the table's
    outcome, and no later entry can name the roles)."""

    deny: tuple[Entry, ...]
    approve: tuple[Entry, ...]
    statuses: bool


def _conditional(policy: Policy) -> dict[tuple[str, str], _Conditional]:
    out: dict[tuple[str, str], _Conditional] = {}
    for ep in ENDPOINTS:
        for access in possible_access(ep):
            deny = tuple(
                e
                for e in policy.deny_rules
                if e.when is not None and entry_matches(e.match, ep, access)
            )
            approve: list[Entry] = []
            for e in policy.approve_rules:
                if entry_matches(e.match, ep, access):
                    if e.when is None:
                        break
                    approve.append(e)
            if deny or approve:
                fields = frozenset().union(*(e.when.fields() for e in (*deny, *approve) if e.when))
                out[(ep.name, access)] = _Conditional(
                    deny, tuple(approve), bool(fields & set(STATUS_FIELDS))
                )
    return out


class Guard:
    """Decides calls for one policy. Pure: no I/O, no state but the precomputed table."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._table = static_decisions(policy)
        self._rules: dict[str, tuple[FieldRule, ...]] = dict(policy.constraints)
        self._routes: dict[tuple[str, str], Decision] = {}
        """Decisions by (method, path) for endpoints whose decision no argument can change."""
        self._when = _conditional(policy)
        self._when_endpoints = frozenset(ep for ep, _ in self._when)
        self.wants_statuses = any(c.statuses for c in self._when.values())
        """Whether a ``when`` names ``status_label``/``status_type`` (see ``learn_statuses``)."""
        self.statuses: dict[str, dict[str, str]] | None = None
        self.statuses_at = 0.0

    def check(self, call: Call, context: RunContext | None = None) -> Decision:
        """The decision for one classified call (argument rules included)."""
        decision = self._table[(call.endpoint.name, call.access)]
        if decision.outcome == "deny":
            return decision
        when = self._when.get((call.endpoint.name, call.access))
        data = self._arguments(call) if when is not None else {}
        if when is not None:
            for entry in when.deny:
                if entry.when is not None and entry.when.evaluate(data):
                    return Decision(
                        "deny",
                        entry.label,
                        f"{call.endpoint.name} is denied by {entry.describe()!r}",
                        call.endpoint.name,
                        call.access,
                    )
        rules = self._rules.get(call.endpoint.name)
        if rules:
            ctx = context or _NO_CONTEXT
            for rule in rules:
                why = _violation(rule, _value(call, rule), ctx)
                if why is not None:
                    return Decision("deny", rule.rule, why, call.endpoint.name, call.access)
        if when is not None:
            for entry in when.approve:
                if entry.when is not None and entry.when.evaluate(data):
                    return Decision(
                        "approve",
                        entry.label,
                        f"{call.endpoint.name} ({call.access}) needs approval by "
                        f"{entry.describe()!r}",
                        call.endpoint.name,
                        call.access,
                        entry.approvers,
                    )
        return decision

    def learn_statuses(self, statuses: Mapping[str, Mapping[str, str]], now: float = 0.0) -> None:
        """Status id -> ``{"label": ..., "type": ...}`` (lead and opportunity statuses), read
        by the transport once, for ``when`` conditions on ``status_label``/``status_type``;
        ``now``: when they were read (monotonic seconds)."""
        self.statuses = {k: dict(v) for k, v in statuses.items()}
        self.statuses_at = now

    def statuses_stale(self, body: Mapping[str, Any] | None, now: float) -> bool:
        """Whether the statuses must be read (again) before deciding a call with ``body``:
        never read yet, or the call sets a status id they do not know (one added since)
        and they are ``STATUS_REFRESH`` seconds old."""
        if self.statuses is None:
            return True
        status = body.get("status_id") if body else None
        return (
            isinstance(status, str)
            and status not in self.statuses
            and now - self.statuses_at >= STATUS_REFRESH
        )

    def _arguments(self, call: Call) -> dict[str, Any]:
        data = call_arguments(call)
        status = self.statuses.get(str(data.get("status_id"))) if self.statuses else None
        if status is not None:
            for key, field in (("label", "status_label"), ("type", "status_type")):
                if status.get(key) is not None and field not in data:
                    data[field] = status[key]
        return data

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

    def decide_request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        context: RunContext | None = None,
    ) -> Decision:
        """``check_request``'s decision alone (the guard's hot path).

        The decision of an endpoint with no escalation and no constraint is its static
        table entry, a function of method and path only, so it is remembered by them (a
        bounded table, emptied when full); every other call is classified and checked.
        """
        found = self._routes.get((method, path))
        if found is not None:
            return found
        try:
            call = classify(method, path, body, params)
        except UnknownEndpoint as exc:
            return Decision("deny", "catalog", str(exc))
        ep = call.endpoint
        if ep.escalate is not None or ep.name in self._rules or ep.name in self._when_endpoints:
            return self.check(call, context)
        decision = self._table[(ep.name, call.access)]
        if len(self._routes) >= _ROUTES_MAX:
            self._routes.clear()
        self._routes[(method, path)] = decision
        return decision

    def fields_read(self, call: Call) -> frozenset[str]:
        """The argument names ``check`` may read for this call (constraints and ``when``
        entries, dotted paths by their first part): a re-decision from a record needs them."""
        when = self._when.get((call.endpoint.name, call.access))
        names = {r.field for r in self._rules.get(call.endpoint.name, ())}
        if when is not None:
            for entry in (*when.deny, *when.approve):
                if entry.when is not None:
                    names.update(f.split(".", 1)[0] for f in entry.when.fields())
        return frozenset(names)

    def reads_statuses(self, call: Call) -> bool:
        """Whether deciding this call needs the organization's statuses: a ``when`` entry
        covering it names ``status_label``/``status_type`` and the call sets a status id."""
        when = self._when.get((call.endpoint.name, call.access))
        return when is not None and when.statuses and "status_id" in call_arguments(call)

    def static(self, endpoint: str, access: Access) -> Decision:
        """The decision before arguments, as ``policy explain`` shows it."""
        return self._table[(endpoint, access)]
