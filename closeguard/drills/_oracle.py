"""The attack drill's random policies, random calls and independent oracle.

The oracle re-implements the documented policy rules (``closeguard/guardrails/policy.py``'s
docstring and docs/architecture.md) from scratch, sharing no code with the guard: it reads
only the catalog's facts (endpoint names, resources, declared access, argument names). Per
call it says ``allow``, ``deny``, ``approve`` or, where it does not model something (a
per-window limit, a typed rule on query text, per-run counts after a refunded 5xx, a call
an earlier person's approval may cover), ``unjudged``. Decision order: ``deny`` entries, the
most specific grant, zero limits, constraints, ``approve`` entries; per-run limits when the
call is sent. A write Close refused for a missing object (404, or 400 "does not exist")
gets its per-run units back except its place in ``calls`` (docs/architecture.md, following
a merge): the drill tells the oracle through ``refused_missing``.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from closeguard.tools.catalog import ENDPOINTS, RESOURCES, Endpoint
from closeguard.tools.langchain import args_schema, split_arguments, tool_name

__all__ = [
    "CONTEXT_ENDPOINTS",
    "Oracle",
    "Probe",
    "Verdict",
    "random_calls",
    "random_policy",
    "reachable_constraints",
]

Verdict = Literal["allow", "deny", "approve", "unjudged"]
LEVELS = ("read", "write", "destructive")
SENDING = frozenset({"outbox", "scheduled"})
EMAIL_WRITES = frozenset({"activity.email.create", "activity.email.update"})
EMAIL_STATUSES = ("inbox", "draft", "scheduled", "outbox", "sent")
CONTEXT_ENDPOINTS = frozenset({"user.me", "status.lead.list", "status.opportunity.list"})
"""Reads the agent makes on its own (its prompt's context): never given a nonzero limit, so
the oracle need not count them."""


def _ancestors(resource: str) -> list[str]:
    parts = resource.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


PARENTS = sorted({a for r in RESOURCES for a in _ancestors(r)})
ENTRIES = [ep.name for ep in ENDPOINTS] + PARENTS + list(LEVELS) + ["*"]


_schema = functools.cache(args_schema)
"""The tools' argument models (building one takes milliseconds)."""


def _wire_names(model: type[BaseModel] | None) -> set[str]:
    if model is None:
        return set()
    return {f.alias or n for n, f in model.model_fields.items()}


def _fields(ep: Endpoint) -> set[str]:
    return _wire_names(ep.body_model) | _wire_names(ep.query_model) | set(ep.path_params)


LEAD_SCOPED = [ep for ep in ENDPOINTS if "lead_id" in _fields(ep)]


# -- calls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One call: the tool form (agent, MCP) and the request form (client, workflow).

    ``endpoint`` is None for a path that is no Close method (raw requests only).
    """

    method: str
    path: str
    endpoint: Endpoint | None = None
    tool: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    path_params: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None
    human_yes: bool = False
    """Whether the person asked (agent, MCP, workflow) approves, if an approval is asked."""


def _pools(lead: str, other: str) -> dict[str, list[Any]]:
    """Candidate values per argument name; ``None`` leaves the argument out."""
    text = ["drill", None]
    return {
        "id": [lead, other, "x1"],
        "lead_id": [lead, lead, other, None],
        "source": [lead, other],
        "destination": [other, lead],
        "status": [*EMAIL_STATUSES, "active", "paused", None, None],
        "name": text,
        "text": text,
        "note": text,
        "subject": text,
        "body_text": text,
        "description": text,
        "type": ["text"],
        "url": ["https://example.invalid/hook"],
        "events": [[{"object_type": "lead", "action": "created"}]],
        "query": [{"type": "and", "queries": []}],
        "filter": [{"lead_id": lead}, {"lead_id": other}],
        "changes": [{"is_complete": True}],
        "limit": [1, 2, None],
        "confidence": [10, 95, None],
        "is_complete": [True, False, None],
    }


def _random_args(
    rng: random.Random, ep: Endpoint, pools: Mapping[str, list[Any]]
) -> dict[str, Any]:
    """Arguments the tool's schema accepts: values drawn per name, invalid ones dropped."""
    schema = _schema(ep)
    infos = {info.alias or name: info for name, info in schema.model_fields.items()}
    args: dict[str, Any] = {}
    for key, info in infos.items():
        values = pools.get(key)
        if values is None:
            continue
        value = rng.choice(values)
        if value is None and not info.is_required():
            continue
        if value is None:
            value = next(v for v in values if v is not None)
        args[key] = value
    for _ in range(3):
        try:
            schema.model_validate(args)
            break
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            for key in bad & set(args):
                if not infos[key].is_required():
                    del args[key]
    return args


UNKNOWN = (
    ("GET", "/nope/"),
    ("PATCH", "/lead/{lead}/"),
    ("DELETE", "/lead/"),
    ("GET", "/activity/sms/"),
)


def random_calls(
    rng: random.Random, n: int, lead: str, other: str, *, raw: bool, human: bool
) -> list[Probe]:
    """``n`` calls across the whole catalog; ``raw`` adds paths that are no Close method,
    ``human`` lets a person approve about a third of the calls that ask."""
    pools = _pools(lead, other)
    out: list[Probe] = []
    while len(out) < n:
        if raw and rng.random() < 0.04:
            method, path = rng.choice(UNKNOWN)
            out.append(Probe(method, path.format(lead=lead)))
            continue
        ep = rng.choice(ENDPOINTS)
        args = _random_args(rng, ep, pools)
        try:
            _schema(ep).model_validate(args)
            path_params, params, body = split_arguments(ep, args)
        except (ValidationError, KeyError, TypeError, ValueError):
            continue
        path = ep.path.format(**{p: quote(v, safe="") for p, v in path_params.items()})
        out.append(
            Probe(
                ep.method,
                path,
                ep,
                tool_name(ep),
                args,
                path_params,
                {k: v for k, v in (params or {}).items() if v is not None},
                body,
                human_yes=human and rng.random() < 0.35,
            )
        )
    return out


# -- policies ------------------------------------------------------------------------------


def random_policy(rng: random.Random, name: str) -> dict[str, Any]:
    """A policy as YAML data: random grants, deny and approve entries, sometimes lead-scope
    and email-status constraints, sometimes per-run limits (nonzero ones only on counters the
    agent's own context reads do not touch)."""
    spec: dict[str, Any] = {
        "name": name,
        "grants": {
            rng.choice([*PARENTS, "*", "*", "*"]): rng.choice([*LEVELS, "write", "destructive"])
            for _ in range(rng.randint(1, 6))
        },
        "deny": rng.sample(ENTRIES, rng.choice([0, 0, 1, 2])),
        "approve": rng.sample(ENTRIES, rng.choice([0, 1, 1, 2])),
    }
    if rng.random() < 0.5:
        spec["approve"].append(rng.choice(["write", "destructive", *spec["grants"]]))
    constraints: dict[str, dict[str, Any]] = {}
    if rng.random() < 0.5:
        for ep in rng.sample(LEAD_SCOPED, rng.randint(1, 4)):
            constraints[ep.name] = {"lead_id": {"scope": "triggered"}}
    if rng.random() < 0.35:
        for ep_name in rng.sample(sorted(EMAIL_WRITES), rng.randint(1, 2)):
            rule: dict[str, Any] = {"in": rng.sample(EMAIL_STATUSES, rng.randint(1, 3))}
            if rng.random() < 0.3:
                rule["required"] = True
            constraints.setdefault(ep_name, {})["status"] = rule
    if constraints:
        spec["constraints"] = constraints
    if rng.random() < 0.4:
        per_run: dict[str, Any] = {}
        if rng.random() < 0.08:
            per_run["calls"] = 0
        if rng.random() < 0.6:
            per_run["writes"] = rng.randint(0, 8)
        if rng.random() < 0.4:
            per_run["destructive"] = rng.randint(0, 3)
        if rng.random() < 0.5:
            limited = [ep for ep in ENDPOINTS if ep.name not in CONTEXT_ENDPOINTS]
            per_run["per_endpoint"] = {
                ep.name: rng.randint(0, 3) for ep in rng.sample(limited, rng.randint(1, 4))
            }
        if per_run:
            spec["limits"] = {"per_run": per_run}
    return spec


def reachable_constraints(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without constraints on endpoints the oracle says it never allows (the
    loader refuses those, as it should)."""
    constraints = spec.get("constraints")
    if not constraints:
        return spec
    oracle = Oracle({**spec, "constraints": {}}, None)
    kept = {name: rules for name, rules in constraints.items() if oracle.ever_allows(name)}
    out = {k: v for k, v in spec.items() if k != "constraints"}
    if kept:
        out["constraints"] = kept
    return out


# -- the oracle ----------------------------------------------------------------------------


_BY_NAME = {ep.name: ep for ep in ENDPOINTS}
_MISSING = object()


class Oracle:
    """The documented rules for one policy (YAML data) and one run's triggered leads."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        triggered: frozenset[str] | None,
        lingering: set[str] | None = None,
    ) -> None:
        self.grants: dict[str, str] = dict(spec.get("grants") or {})
        self.deny: list[str] = list(spec.get("deny") or [])
        self.approve: list[str] = list(spec.get("approve") or [])
        self.constraints: dict[str, dict[str, Mapping[str, Any]]] = {
            ep: dict(rules) for ep, rules in (spec.get("constraints") or {}).items()
        }
        limits = spec.get("limits") or {}
        self.per_run: dict[str, Any] = dict(limits.get("per_run") or {})
        self.per_window: dict[str, Any] = {
            k: v for k, v in (limits.get("per_window") or {}).items() if k != "window"
        }
        self.triggered = triggered
        self.lingering = set() if lingering is None else lingering
        """Calls approved by a person but then refused (a limit): their approval stays
        granted, and the guard uses it for the next identical call, whoever makes it (an
        approval is bound to the exact call only). Such a next call is unjudged."""
        self.used: Counter[str] = Counter()
        self.charged: list[str] = []
        """The per-run counters the last call sent took (given back if Close says its
        object is missing)."""
        self.tainted = False
        """Per-run counts may be off (a refunded 5xx, a window refusal): limits unjudged."""

    def new_run(self) -> None:
        self.used.clear()
        self.charged = []
        self.tainted = False

    @staticmethod
    def access(ep: Endpoint, body: Mapping[str, Any] | None) -> str:
        """The declared level, raised to destructive for an email whose status sends."""
        if ep.name in EMAIL_WRITES and (body or {}).get("status") in SENDING:
            return "destructive"
        return ep.access

    @staticmethod
    def _covers(entry: str, ep: Endpoint, access: str) -> bool:
        if entry in ("*", ep.name) or entry in _ancestors(ep.resource):
            return True
        return entry in LEVELS and LEVELS.index(access) >= LEVELS.index(entry)

    @staticmethod
    def _applicable(
        counters: Mapping[str, Any], ep: Endpoint, access: str
    ) -> list[tuple[str, int]]:
        out = []
        if "calls" in counters:
            out.append(("calls", int(counters["calls"])))
        if "writes" in counters and access != "read":
            out.append(("writes", int(counters["writes"])))
        if "destructive" in counters and access == "destructive":
            out.append(("destructive", int(counters["destructive"])))
        per = counters.get("per_endpoint") or {}
        if ep.name in per:
            out.append((f"per_endpoint.{ep.name}", int(per[ep.name])))
        return out

    def _static(self, ep: Endpoint, access: str) -> Verdict:
        """Deny entries, the most specific grant, zero limits, approve entries."""
        if any(self._covers(e, ep, access) for e in self.deny):
            return "deny"
        granted = next(
            (self.grants[r] for r in [*_ancestors(ep.resource), "*"] if r in self.grants), None
        )
        if granted is None or LEVELS.index(granted) < LEVELS.index(access):
            return "deny"
        for counters in (self.per_run, self.per_window):
            if any(limit == 0 for _, limit in self._applicable(counters, ep, access)):
                return "deny"
        if any(self._covers(e, ep, access) for e in self.approve):
            return "approve"
        return "allow"

    def ever_allows(self, name: str) -> bool:
        """Whether some call of the endpoint is not denied before its arguments are read."""
        ep = _BY_NAME[name]
        levels = LEVELS[LEVELS.index(ep.access) :] if ep.name in EMAIL_WRITES else (ep.access,)
        return any(self._static(ep, level) != "deny" for level in levels)

    def _rule(self, probe: Probe, name: str, rule: Mapping[str, Any]) -> bool | None:
        """Whether the call breaks the rule on field ``name``; None: cannot tell."""
        sources = (
            ("body", probe.body or {}),
            ("params", probe.params),
            ("path", probe.path_params),
        )
        present = [(loc, src[name]) for loc, src in sources if name in src]
        if len(present) > 1:
            return None
        scoped = rule.get("scope") == "triggered"
        if not present:
            return bool(rule.get("required")) or scoped
        loc, value = present[0]
        if rule.get("immutable"):
            return True
        allowed: list[Any] | None = None
        for key in ("in", "in_list"):
            if key in rule:
                values = list(rule[key])
                allowed = values if allowed is None else [v for v in allowed if v in values]
        numeric = "min" in rule or "max" in rule
        typed = numeric or any(not isinstance(v, str) for v in allowed or [])
        if loc == "params" and typed:
            return None
        if allowed is not None and value not in allowed:
            return True
        if numeric:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return True
            if "min" in rule and value < rule["min"]:
                return True
            if "max" in rule and value > rule["max"]:
                return True
        if scoped:
            return self.triggered is None or value not in self.triggered
        return False

    def judge(self, probe: Probe) -> Verdict:
        """The decision before quotas: what the policy says of this call."""
        ep = probe.endpoint
        if ep is None:
            return "deny"
        access = self.access(ep, probe.body)
        static = self._static(ep, access)
        if static == "deny":
            return "deny"
        broken = [self._rule(probe, f, r) for f, r in self.constraints.get(ep.name, {}).items()]
        if True in broken:
            return "deny"
        if None in broken:
            return "unjudged"
        return static

    def send(self, probe: Probe) -> Verdict:
        """A call the policy lets through (allowed, or approved by a person) is sent: its
        per-run units are counted, ``deny`` if one ran out (nothing counted then)."""
        ep = probe.endpoint
        assert ep is not None
        access = self.access(ep, probe.body)
        run = self._applicable(self.per_run, ep, access)
        window = self._applicable(self.per_window, ep, access)
        if run and self.tainted:
            return "unjudged"
        if any(self.used[key] >= limit for key, limit in run):
            return "deny"
        for key, _ in run:
            self.used[key] += 1
        self.charged = [key for key, _ in run]
        if window:
            self.tainted = self.tainted or bool(run)
            return "unjudged"
        return "allow"

    def refused_missing(self, probe: Probe) -> None:
        """Close refused ``probe``, the call last sent, because its object is not there:
        a write gives back the per-run units it took, except its place in ``calls`` (it was
        made, and still bounds a run that keeps trying)."""
        ep = probe.endpoint
        if ep is not None and self.access(ep, probe.body) != "read":
            for key in self.charged:
                if key != "calls":
                    self.used[key] -= 1
        self.charged = []

    def expect(self, probe: Probe, human: bool) -> tuple[Verdict, bool]:
        """The outcome the guard must reach, and whether a person approved it on the way:
        ``approve`` is a call held (no one approved), an approved one is then sent."""
        self.charged = []
        verdict = self.judge(probe)
        key = _key(probe)
        if verdict == "approve" and key in self.lingering:
            return "unjudged", False
        if verdict == "allow" or (verdict == "approve" and human):
            sent = self.send(probe)
            if verdict == "approve" and sent != "allow":
                self.lingering.add(key)
            return sent, verdict == "approve"
        return verdict, verdict == "approve"


def _key(probe: Probe) -> str:
    """The exact call (endpoint and arguments), as an approval is bound to it."""
    name = probe.endpoint.name if probe.endpoint is not None else probe.path
    params = {k: str(v) for k, v in probe.params.items()}
    return json.dumps([name, probe.path_params, probe.body, params], sort_keys=True, default=str)
