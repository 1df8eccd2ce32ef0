"""The least-privilege policy of a rule, computed from its steps.

- grants: each resource a step touches, at the highest access level its steps need; every
  other endpoint of those resources is denied by name, so the policy allows exactly the
  endpoints the steps (and their read-backs) use;
- constraints: in a rule triggered by an event, ``scope: triggered`` on the lead of every
  write (``lead_id``, or the id of a lead) and of every read that names a lead; a write
  may send only the fields its step sets (every other field is ``immutable``), and an
  update must send them (``required``);
- limits: per run, writes equal to the steps' writes (a ``for_each`` counts its ``limit``
  times), per endpoint likewise, and no destructive call unless a step deletes;
- the rule's ``policy:`` adds denies and approvals, its ``limits:`` may lower the per-run
  numbers and add per-window ones: neither can widen what the steps derive.

``wider_than`` checks an agent step's named policy against the rule's
``agent_policy_max``; ``policy_data`` gives a policy as the data a policy YAML holds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from closeguard.guardrails import Policy
from closeguard.guardrails.policy import FieldRule, endpoint_fields
from closeguard.guardrails.static import Outcome, possible_access, static_decisions
from closeguard.tools.access import Access
from closeguard.tools.catalog import ACCESS_RANK, BY_NAME, ENDPOINTS, Endpoint
from closeguard.tools.errors import ConfigError
from closeguard.workflows.definition import EventTrigger
from closeguard.workflows.rules.model import (
    AgentStep,
    FindStep,
    ForEachStep,
    LlmStep,
    Rule,
    RuleStep,
    WriteStep,
)
from closeguard.workflows.rules.template import Template

__all__ = [
    "Use",
    "derive_policy",
    "policy_data",
    "readback_endpoint",
    "uses",
    "wider_than",
]

_RANK: dict[Outcome, int] = {"deny": 0, "approve": 1, "allow": 2}


@dataclass
class Use:
    """How a rule uses one endpoint."""

    endpoint: Endpoint
    writes: int = 0
    lead_scoped: bool = True
    """Every use names the lead (a list read that filters by it, any write, ``lead.get``)."""
    fields: set[str] = field(default_factory=set)


def readback_endpoint(step: WriteStep) -> Endpoint | None:
    """The read a write's read-back makes: the list by lead for a create, the get by id
    for an update or delete (None when the catalog has no such read)."""
    prefix = step.endpoint.name.rsplit(".", 1)[0]
    if step.kind == "create":
        ep = BY_NAME.get(f"{prefix}.list")
        if ep is None or "lead_id" not in step.fields or "lead_id" not in endpoint_fields(ep):
            return None
        return ep
    return BY_NAME.get(f"{prefix}.get")


def _walk(steps: tuple[RuleStep, ...], times: int) -> Iterator[tuple[RuleStep, int]]:
    for step in steps:
        if isinstance(step, ForEachStep):
            yield step, times
            yield from _walk(step.steps, times * _count(step.limit))
        else:
            yield step, times


def _count(limit: Any) -> int:
    return int(limit) if isinstance(limit, int) else 1


def uses(rule: Rule) -> dict[str, Use]:
    """Every endpoint the rule calls, with its writes per run."""
    found: dict[str, Use] = {}

    def use(ep: Endpoint, *, writes: int = 0, scoped: bool = True, sent: Any = ()) -> None:
        u = found.setdefault(ep.name, Use(ep))
        u.writes += writes
        u.lead_scoped = u.lead_scoped and scoped
        u.fields.update(sent)

    event_object = rule.trigger.object_type if isinstance(rule.trigger, EventTrigger) else None
    if "lead" in rule.context:
        use(BY_NAME["lead.get"])
    if "deal" in rule.context and event_object != "opportunity":
        use(BY_NAME["opportunity.get"], scoped=False)
    if "user" in rule.context:
        use(BY_NAME["user.get"], scoped=False)
    for step, times in _walk(rule.steps, 1):
        if isinstance(step, ForEachStep):
            continue
        if isinstance(step, WriteStep):
            use(step.endpoint, writes=times, sent=step.fields)
            back = readback_endpoint(step)
            if back is not None:
                use(back, scoped=step.endpoint.resource == "lead" or step.kind == "create")
        elif isinstance(step, FindStep):
            scoped = "lead_id" in step.where or (
                step.endpoint.resource == "lead" and step.id is not None
            )
            use(step.endpoint, scoped=scoped)
    return found


def for_each_limit(step: ForEachStep, params: Mapping[str, Any], rule: Rule) -> int | None:
    """A ``for_each``'s ``limit`` with the rule's parameters (a template may read them)."""
    if step.limit is None:
        return None
    if isinstance(step.limit, Template):
        try:
            value = step.limit.render({"params": dict(params)})
            return int(value)
        except Exception as exc:
            raise ConfigError(
                f"for_each limit {step.limit.source!r}: {exc} (a limit may read params only)",
                file=rule.file,
                line=step.line,
            ) from None
    return int(step.limit)


def _resolved(rule: Rule) -> Rule:
    """``rule`` with every ``for_each`` limit a number (templates read the defaults)."""

    def fix(steps: tuple[RuleStep, ...]) -> tuple[RuleStep, ...]:
        out: list[RuleStep] = []
        for step in steps:
            if isinstance(step, ForEachStep):
                step = dataclasses.replace(
                    step, limit=for_each_limit(step, rule.params, rule), steps=fix(step.steps)
                )
            out.append(step)
        return tuple(out)

    return dataclasses.replace(rule, steps=fix(rule.steps))


def _writes_fields(ep: Endpoint) -> set[str]:
    return {n for n, places in endpoint_fields(ep).items() if any(p == "body" for p, _ in places)}


def derive_policy(rule: Rule) -> Policy:
    """The rule's least-privilege policy (see the module's docstring)."""
    found = uses(_resolved(rule))
    grants: dict[str, Access] = {}
    for u in found.values():
        level = u.endpoint.access
        have = grants.get(u.endpoint.resource)
        if have is None or ACCESS_RANK[level] > ACCESS_RANK[have]:
            grants[u.endpoint.resource] = level
    base: dict[str, Any] = {
        "name": rule.name,
        "description": f"Derived from rule {rule.name}: exactly the calls its steps make.",
        "mode": "enforce",
        "grants": dict(grants),
    }
    table = static_decisions(_load(base, rule))
    deny = [
        ep.name
        for ep in ENDPOINTS
        if ep.name not in found
        and any(table[(ep.name, a)].outcome != "deny" for a in possible_access(ep))
    ]
    deny += [d for d in rule.deny if d not in deny]
    base["deny"] = deny
    if rule.approve:
        base["approve"] = list(rule.approve)
    allowed = static_decisions(_load(base, rule))
    base["constraints"] = _constraints(rule, found, allowed)
    if not base["constraints"]:
        del base["constraints"]
    base["limits"] = _limits(rule, found)
    return _load(base, rule)


def _constraints(
    rule: Rule, found: Mapping[str, Use], table: Mapping[tuple[str, Access], Any]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, u in found.items():
        ep = u.endpoint
        if all(table[(name, a)].outcome == "deny" for a in possible_access(ep)):
            continue
        rules: dict[str, Any] = {}
        takes = endpoint_fields(ep)
        if rule.event_triggered and u.lead_scoped:
            if "lead_id" in takes and (ep.access != "read" or ep.name.endswith(".list")):
                rules["lead_id"] = {"scope": "triggered"}
            elif ep.resource == "lead" and "id" in ep.path_params:
                rules["id"] = {"scope": "triggered"}
        if ep.access != "read":
            for other in sorted(_writes_fields(ep) - u.fields):
                rules[other] = {"immutable": True}
        if name.endswith(".update"):  # an update step always sends its fields
            for sent in sorted(u.fields & _writes_fields(ep)):
                rules.setdefault(sent, {"required": True})
        if rules:
            out[name] = rules
    return out


def _limits(rule: Rule, found: Mapping[str, Use]) -> dict[str, Any]:
    writes = Counter({n: u.writes for n, u in found.items() if u.writes})
    destructive = sum(n for name, n in writes.items() if BY_NAME[name].access == "destructive")
    per_run: dict[str, Any] = {
        "writes": sum(writes.values()),
        "destructive": destructive,
    }
    if writes:
        per_run["per_endpoint"] = dict(writes)
    given = rule.limits.get("per_run") or {}
    if not isinstance(given, dict):
        raise ConfigError("limits.per_run is a mapping of counters", file=rule.file)
    for key, value in given.items():
        if key == "per_endpoint" and isinstance(value, dict):
            mine = per_run.setdefault("per_endpoint", {})
            for ep, n in value.items():
                if ep in mine and isinstance(n, int) and n > mine[ep]:
                    raise _widen(rule, f"per_endpoint.{ep}", n, mine[ep])
                mine[ep] = n
        elif key in per_run and isinstance(value, int) and value > per_run[key]:
            raise _widen(rule, key, value, per_run[key])
        else:
            per_run[key] = value
    out: dict[str, Any] = {"per_run": per_run}
    if rule.limits.get("per_window"):
        out["per_window"] = rule.limits["per_window"]
    for key in rule.limits:
        if key not in ("per_run", "per_window"):
            out[key] = rule.limits[key]  # the policy loader names the mistake
    return out


def _widen(rule: Rule, key: str, given: Any, derived: Any) -> ConfigError:
    return ConfigError(
        f"limits.per_run.{key}: {given} is more than the steps need ({derived}); a rule's "
        "limits may only narrow its derived policy",
        file=rule.file,
        line=rule.limits_line,
    )


def _load(data: Mapping[str, Any], rule: Rule) -> Policy:
    try:
        policy = Policy.from_dict(data, file=f"<derived policy of {rule.name}>")
    except ConfigError as exc:
        raise ConfigError(
            f"rule {rule.name!r}: {exc.reason}", file=rule.file, line=rule.line
        ) from None
    return policy


# -- comparing and showing policies ---------------------------------------------------------


def wider_than(policy: Policy, maximum: Policy) -> list[str]:
    """How ``policy`` allows more than ``maximum`` (empty: it is no wider).

    Compared: each endpoint's decision at each access level (deny < approve < allow), the
    argument constraints of ``maximum`` on endpoints ``policy`` allows (each must be kept,
    or made stricter), and the per-run limits. Per-window limits are counted per policy
    name, so they are not compared.
    """
    mine, theirs = static_decisions(policy), static_decisions(maximum)
    out: list[str] = []
    for key, decision in mine.items():
        top = theirs[key]
        if _RANK[decision.outcome] > _RANK[top.outcome]:
            out.append(f"{key[0]} ({key[1]}): {decision.outcome} where it is {top.outcome}")
    for ep_name, rules in maximum.constraints.items():
        ep = BY_NAME[ep_name]
        if all(mine[(ep_name, a)].outcome == "deny" for a in possible_access(ep)):
            continue
        have = {r.field: r for r in policy.constraints.get(ep_name, ())}
        for rule in rules:
            if not _as_strict(have.get(rule.field), rule):
                out.append(f"{ep_name}: {rule.field} is not held to {rule.describe()}")
    for counter in ("calls", "writes", "destructive"):
        top_n = getattr(maximum.limits.per_run, counter)
        n = getattr(policy.limits.per_run, counter)
        if top_n is not None and (n is None or n > top_n):
            out.append(f"limits.per_run.{counter}: {n if n is not None else 'none'} > {top_n}")
    return out


def _as_strict(mine: FieldRule | None, top: FieldRule) -> bool:
    if mine is None:
        return False
    if mine.immutable:
        return not top.required
    if top.immutable:
        return False
    if top.allowed is not None and (
        mine.allowed is None or not set(mine.allowed) <= set(top.allowed)
    ):
        return False
    if top.min is not None and (mine.min is None or mine.min < top.min):
        return False
    if top.max is not None and (mine.max is None or mine.max > top.max):
        return False
    if top.scope is not None and mine.scope != top.scope:
        return False
    return not (top.required and not mine.required)


def _window(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _rule_data(rule: FieldRule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.allowed is not None:
        out["in"] = list(rule.allowed)
    for key in ("min", "max"):
        value = getattr(rule, key)
        if value is not None:
            out[key] = int(value) if float(value).is_integer() else value
    if rule.immutable:
        out["immutable"] = True
    if rule.scope:
        out["scope"] = rule.scope
    if rule.required and not rule.scope:
        out["required"] = True
    return out


def _counters(c: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: getattr(c, k) for k in ("calls", "writes", "destructive") if getattr(c, k) is not None
    }
    if c.per_endpoint:
        out["per_endpoint"] = dict(c.per_endpoint)
    return out


def policy_data(policy: Policy) -> dict[str, Any]:
    """``policy`` as the data a policy YAML holds (``Policy.from_dict`` reads it back)."""
    data: dict[str, Any] = {"name": policy.name}
    if policy.description:
        data["description"] = policy.description
    data["mode"] = policy.mode
    data["grants"] = dict(policy.grants)
    data["deny"] = list(policy.deny)
    data["approve"] = list(policy.approve)
    data["constraints"] = {
        ep: {r.field: _rule_data(r) for r in rules} for ep, rules in policy.constraints.items()
    }
    limits: dict[str, Any] = {}
    per_run = _counters(policy.limits.per_run)
    if per_run:
        limits["per_run"] = per_run
    per_window = _counters(policy.limits.per_window)
    if per_window:
        limits["per_window"] = {"window": _window(policy.limits.window_seconds), **per_window}
    data["limits"] = limits
    return data


def step_kinds(steps: tuple[RuleStep, ...]) -> list[str]:
    """A one-word description per step, nested ones after their ``for_each``."""
    out = []
    for step, _ in _walk(steps, 1):
        if isinstance(step, WriteStep):
            out.append(f"{step.name}: {step.kind} {step.endpoint.name.rsplit('.', 1)[0]}")
        elif isinstance(step, FindStep):
            out.append(f"{step.name}: find {step.endpoint.name.rsplit('.', 1)[0]}")
        elif isinstance(step, LlmStep):
            out.append(f"{step.name}: llm")
        elif isinstance(step, AgentStep):
            out.append(f"{step.name}: agent under {step.policy.name}")
        else:
            out.append(f"{step.name}: for_each {step.item}")
    return out
