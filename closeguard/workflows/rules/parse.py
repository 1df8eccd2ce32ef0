"""Reading rule files: YAML (one rule or a list of rules) into ``Rule`` objects.

Every mistake is one ``ConfigError`` naming the file and the line it is on: an unknown key
(with the nearest known one), a trigger Close never sends, a resource with no such
endpoint, a field the endpoint does not take, a template that does not parse or reads a
name that is not defined at that step, a step name used twice, an agent policy wider
than the rule allows. ``on:`` is read as the key "on" (YAML 1.1 would make it ``True``).
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from closeguard.guardrails import Policy
from closeguard.guardrails._yaml import Lines, load_yaml, shown
from closeguard.guardrails.conditions import Condition, parse_condition
from closeguard.guardrails.policy import endpoint_fields
from closeguard.tools.catalog import BY_NAME, ENDPOINTS, Endpoint
from closeguard.tools.errors import ConfigError
from closeguard.workflows.definition import EventTrigger, ManualTrigger, ScheduleTrigger, Trigger
from closeguard.workflows.rules.derive import wider_than
from closeguard.workflows.rules.model import (
    AgentStep,
    FindStep,
    ForEachStep,
    LlmStep,
    Rule,
    RuleStep,
    Skip,
    WriteStep,
)
from closeguard.workflows.rules.template import Template, compile_value, names_in

__all__ = [
    "CONTEXT_NAMES",
    "EVENTS",
    "STEP_KINDS",
    "TOP_KEYS",
    "RuleTrigger",
    "parse_rules",
    "read_rules",
]

Path_ = tuple[str | int, ...]

TOP_KEYS = (
    "name",
    "description",
    "on",
    "changed",
    "every",
    "timezone",
    "required",
    "if",
    "params",
    "limits",
    "policy",
    "agent_policy_max",
    "steps",
)
STEP_KINDS = ("create", "update", "delete", "find", "llm", "agent", "for_each")
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "create": ("fields", "match"),
    "update": ("id", "fields", "match"),
    "delete": ("id",),
    "find": ("id", "where", "filter", "limit", "or_fail"),
    "llm": ("output",),
    "agent": ("policy", "max_turns"),
    "for_each": ("item", "steps", "limit"),
}
COMMON_STEP_KEYS = ("as", "skip_if")
OUTPUT_TYPES = ("text", "number", "integer", "boolean", "list")
EVENTS: frozenset[str] = frozenset(e for ep in ENDPOINTS for e in ep.events)
EVENT_NAMES = ("event", "data", "previous", "lead", "deal", "user")
CONTEXT_NAMES = ("params", "today", "now", "business_days", "days_ago", *EVENT_NAMES)
"""Names every template may read (the event ones only in event rules)."""
FETCHED = ("lead", "deal", "user")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_STEP_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_INTERVAL = re.compile(r"^(\d+)\s*(m|h|d)$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class RuleTrigger(EventTrigger):
    """An event trigger with the rule's ``if:`` condition over the event's data.

    The condition sees the data's fields by name and the previous values under
    ``previous_data`` (``previous_data.status_id``).
    """

    condition: Condition | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        if not super().matches(event):
            return False
        if self.condition is None:
            return True
        values = {**(event.get("data") or {}), "previous_data": event.get("previous_data") or {}}
        return self.condition.evaluate(values)


def read_rules(file: Path, *, packaged: bool = False) -> list[tuple[Rule, int]]:
    """The rules of a YAML file with the line each starts on (``packaged``: see
    ``parse_rules``)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the rule file: {reason}", file=str(file)) from None
    return parse_rules(text, str(file), base_dir=file.parent, packaged=packaged)


def parse_rules(
    text: str, file: str = "<rule>", *, base_dir: Path | None = None, packaged: bool = False
) -> list[tuple[Rule, int]]:
    """The rules in ``text`` (YAML: one rule mapping, or a list of them).

    ``packaged``: closeguard's own rules, whose crontab lines the test suite checks; they
    skip that check here, which imports APScheduler (about 40 ms of every command that
    lists the workflows). Every other check runs."""
    data, lines = load_yaml(text, file)
    if isinstance(data, dict):
        return [(_Parser(lines, base_dir, packaged).rule(data, ()), lines.line(()))]
    if isinstance(data, list) and data:
        out = []
        names: dict[str, int] = {}
        for i, item in enumerate(data):
            rule = _Parser(lines, base_dir, packaged).rule(item, (i,))
            if rule.name in names:
                raise lines.error(
                    (i, "name"),
                    f"rule name {rule.name!r} is already used on line {names[rule.name]}",
                )
            names[rule.name] = lines.line((i,))
            out.append((rule, lines.line((i,))))
        return out
    raise lines.error((), "a rule file holds one rule (name:, on:, steps:) or a list of rules")


def _unknown(kind: str, value: Any, known: Collection[str]) -> str:
    near = difflib.get_close_matches(str(value), [str(k) for k in known], n=3)
    hint = f"; did you mean {', '.join(near)}?" if near else f"; known: {', '.join(sorted(known))}"
    return f"unknown {kind} {shown(value)}{hint}"


def _targets(action: str) -> list[str]:
    suffix = f".{action}"
    return sorted(name.removesuffix(suffix) for name in BY_NAME if name.endswith(suffix))


class _Parser:
    def __init__(self, lines: Lines, base_dir: Path | None, packaged: bool = False) -> None:
        self.lines = lines
        self.base_dir = base_dir
        self.packaged = packaged
        self.step_names: dict[str, int] = {}
        self.fetched: set[str] = set()
        self.event = False
        self.agent_max: Policy | None = None

    def error(self, path: Path_, message: str) -> ConfigError:
        return self.lines.error(path, message)

    # -- the rule ------------------------------------------------------------------------

    def rule(self, raw: Any, at: Path_) -> Rule:
        if not isinstance(raw, dict):
            raise self.error(at, f"a rule is a mapping (name:, on:, steps:), not {shown(raw)}")
        for key in raw:
            if key not in TOP_KEYS:
                raise self.error((*at, key), _unknown("key", key, TOP_KEYS))
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.error(
                (*at, "name") if "name" in raw else at,
                "a rule needs name: in lowercase letters, digits, '-', '_' or '.'"
                + (f", not {shown(name)}" if "name" in raw else ""),
            )
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise self.error((*at, "description"), "description must be text")
        trigger = self.trigger(raw, at)
        self.event = isinstance(trigger, EventTrigger)
        condition = None
        if "if" in raw:
            if not isinstance(trigger, EventTrigger):
                raise self.error((*at, "if"), "if: looks at an event's data: it needs on: EVENT")
            condition = parse_condition(raw["if"], self.lines, (*at, "if"), where="if")
            trigger = RuleTrigger(
                trigger.object_type,
                trigger.action,
                trigger.changed_fields,
                condition=condition,
            )
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            raise self.error((*at, "params"), "params maps parameter names to default values")
        for key in params:
            if not _STEP_NAME.match(key):
                raise self.error((*at, "params", key), f"parameter name {key!r}: use a-z, 0-9, _")
        if isinstance(trigger, ManualTrigger):
            unknown = [p for p in trigger.required if p in params]
            if unknown:
                raise self.error(
                    (*at, "required"), f"required parameter {unknown[0]!r} also has a default"
                )
        max_name = raw.get("agent_policy_max", "sales-rep")
        if not isinstance(max_name, str):
            raise self.error((*at, "agent_policy_max"), "agent_policy_max names a policy")
        self.agent_max = self.load_policy(max_name, (*at, "agent_policy_max"))
        deny, approve = self.narrowing(raw.get("policy"), (*at, "policy"))
        limits = raw.get("limits") or {}
        if not isinstance(limits, dict):
            raise self.error((*at, "limits"), "limits has per_run and/or per_window")
        steps = self.steps(raw.get("steps"), (*at, "steps"), set())
        return Rule(
            name=name,
            trigger=trigger,
            condition=condition,
            steps=steps,
            description=description.strip(),
            params=dict(params),
            limits=dict(limits),
            deny=deny,
            approve=approve,
            agent_policy_max=max_name,
            context=frozenset(self.fetched),
            file=self.lines.file,
            line=self.lines.line(at),
            limits_line=self.lines.line((*at, "limits")),
        )

    def trigger(self, raw: dict[str, Any], at: Path_) -> Trigger:
        on, every = raw.get("on"), raw.get("every")
        if ("on" in raw) == ("every" in raw):
            raise self.error(
                at,
                "a rule needs exactly one trigger: on: EVENT (opportunity.updated), "
                "on: manual, or every: CRON",
            )
        if "every" in raw:
            for key in ("changed", "required"):
                if key in raw:
                    raise self.error((*at, key), f"{key}: goes with on:, not every:")
            return self.schedule(every, raw.get("timezone", "UTC"), at)
        if "timezone" in raw:
            raise self.error((*at, "timezone"), "timezone: goes with every:")
        if on == "manual":
            if "changed" in raw:
                raise self.error((*at, "changed"), "changed: goes with on: EVENT")
            required = raw.get("required") or []
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                raise self.error((*at, "required"), "required is a list of parameter names")
            return ManualTrigger(tuple(required))
        if "required" in raw:
            raise self.error((*at, "required"), "required: goes with on: manual")
        names = on if isinstance(on, list) else [on]
        if not names:
            raise self.error((*at, "on"), "on: takes an event name like opportunity.updated")
        kinds: set[str] = set()
        actions: list[str] = []
        for i, name in enumerate(names):
            where = (*at, "on", i) if isinstance(on, list) else (*at, "on")
            if not isinstance(name, str) or name not in EVENTS:
                raise self.error(where, _unknown("event", name, [*sorted(EVENTS), "manual"]))
            kind, _, action = str(name).rpartition(".")
            kinds.add(kind)
            actions.append(action)
        if len(kinds) > 1:
            raise self.error((*at, "on"), "the events of one rule are about one kind of object")
        changed = raw.get("changed") or []
        if not isinstance(changed, list) or not all(isinstance(c, str) and c for c in changed):
            raise self.error((*at, "changed"), "changed is a list of field names")
        return EventTrigger(
            kinds.pop(),
            actions[0] if len(actions) == 1 else tuple(actions),
            changed_fields=tuple(changed),
        )

    def schedule(self, every: Any, timezone: Any, at: Path_) -> ScheduleTrigger:
        if not isinstance(timezone, str):
            raise self.error((*at, "timezone"), "timezone is a name like Europe/Paris")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise self.error(
                (*at, "timezone"), f"unknown timezone {timezone!r} (use a name like Europe/Paris)"
            ) from None
        if not isinstance(every, str) or not every.strip():
            raise self.error(
                (*at, "every"),
                f'every takes a crontab line ("0 8 * * 1-5") or 15m/1h/1d, not {shown(every)}',
            )
        interval = _INTERVAL.match(every.strip())
        if interval is not None:
            seconds = int(interval[1]) * _UNITS[interval[2]]
            if seconds <= 0:
                raise self.error((*at, "every"), "every: the interval must be above zero")
            return ScheduleTrigger(every=timedelta(seconds=seconds), timezone=timezone)
        trigger = ScheduleTrigger(cron=every.strip(), timezone=timezone)
        if self.packaged:
            return trigger
        from closeguard.workflows.cron import aps_trigger

        try:
            aps_trigger(trigger)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise self.error((*at, "every"), f"every: not a crontab line: {exc}") from None
        return trigger

    def narrowing(self, raw: Any, at: Path_) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if raw is None:
            return (), ()
        if not isinstance(raw, dict):
            raise self.error(at, "policy: narrows the derived policy with deny: and approve:")
        out: dict[str, tuple[str, ...]] = {"deny": (), "approve": ()}
        known = set(BY_NAME) | {ep.resource for ep in ENDPOINTS} | {"read", "write", "destructive"}
        for key, entries in raw.items():
            if key not in out:
                raise self.error(
                    (*at, key),
                    f"policy: takes only deny: and approve: (a rule may narrow its derived "
                    f"policy, never widen it), not {key!r}",
                )
            if not isinstance(entries, list):
                raise self.error((*at, key), f"policy.{key} is a list of endpoints or resources")
            for i, entry in enumerate(entries):
                if not isinstance(entry, str) or entry not in known:
                    raise self.error((*at, key, i), _unknown(f"{key} entry", entry, known))
            out[key] = tuple(entries)
        return out["deny"], out["approve"]

    def load_policy(self, source: str, at: Path_) -> Policy:
        beside = self.base_dir / source if self.base_dir is not None else None
        try:
            if beside is not None and not Path(source).is_absolute() and beside.is_file():
                return Policy.load(beside)
            return Policy.load(source)
        except ConfigError as exc:
            if exc.file is not None and not exc.file.startswith("<"):
                raise
            raise self.error(at, exc.reason) from None

    # -- steps ---------------------------------------------------------------------------

    def known(self, scope: Collection[str]) -> set[str]:
        base = {"params", "today", "now", "business_days", "days_ago"}
        if self.event:
            base |= set(EVENT_NAMES)
        return base | set(scope)

    def steps(self, raw: Any, at: Path_, scope: set[str]) -> tuple[RuleStep, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error(at, "steps is a non-empty list of steps (create:, find:, ...)")
        out: list[RuleStep] = []
        for i, item in enumerate(raw):
            step = self.step(item, (*at, i), scope, default=f"step{len(self.step_names) + 1}")
            scope.add(step.name)
            out.append(step)
        return tuple(out)

    def step(self, raw: Any, at: Path_, scope: set[str], *, default: str) -> RuleStep:
        if not isinstance(raw, dict) or not raw:
            raise self.error(
                at, f"a step is a mapping starting with one of {', '.join(STEP_KINDS)}"
            )
        kinds = [k for k in raw if k in STEP_KINDS]
        if len(kinds) != 1:
            what = "none" if not kinds else ", ".join(kinds)
            raise self.error(
                at, f"a step has exactly one of {', '.join(STEP_KINDS)} (this one has {what})"
            )
        kind = kinds[0]
        allowed = (kind, *STEP_KEYS[kind], *COMMON_STEP_KEYS)
        for key in raw:
            if key not in allowed:
                raise self.error((*at, key), _unknown(f"key for a {kind} step", key, allowed))
        name = raw.get("as", default)
        if not isinstance(name, str) or not _STEP_NAME.match(name):
            raise self.error((*at, "as"), f"as: names the result (a-z, 0-9, _), not {shown(name)}")
        if name in CONTEXT_NAMES:
            raise self.error((*at, "as"), f"as: {name!r} is a name every template already has")
        if name in self.step_names:
            raise self.error(
                (*at, "as"), f"step name {name!r} is already used on line {self.step_names[name]}"
            )
        self.step_names[name] = self.lines.line(at)
        known = self.known(scope)
        line = self.lines.line(at)
        skip = self.skip(raw.get("skip_if"), (*at, "skip_if"), known)
        if kind in ("create", "update", "delete"):
            return self.write(kind, raw, at, name, line, skip, known)
        if kind == "find":
            return self.find(raw, at, name, line, skip, known)
        if kind == "llm":
            return self.llm(raw, at, name, line, skip, known)
        if kind == "agent":
            return self.agent(raw, at, name, line, skip, known)
        return self.for_each(raw, at, name, line, skip, scope)

    def value(self, raw: Any, at: Path_, known: Collection[str]) -> Any:
        value = compile_value(raw, self.lines, at, known)
        if self.event:  # elsewhere lead/deal/user can only be a step's or an item's name
            self.fetched |= _names(value) & set(FETCHED)
        return value

    def skip(self, raw: Any, at: Path_, known: Collection[str]) -> Skip:
        if raw is None:
            return None
        if isinstance(raw, str):
            value = self.value(raw if "{" in raw else "{{ " + raw + " }}", at, known)
            if not isinstance(value, Template):
                raise self.error(at, "skip_if: a condition mapping or a {{ expression }}")
            return value
        condition = parse_condition(raw, self.lines, at, where=str(at[-1]) if at else "skip_if")
        roots = {f.split(".")[0] for f in condition.fields()}
        unknown = sorted(roots - set(known))
        if unknown:
            raise self.error(
                at,
                f"{at[-1]}: {', '.join(map(repr, unknown))} is not defined here; known: "
                f"{', '.join(sorted(known))}",
            )
        if self.event:
            self.fetched |= roots & set(FETCHED)
        return condition

    def endpoint(self, kind: str, target: Any, at: Path_, action: str) -> Endpoint:
        if not isinstance(target, str) or f"{target}.{action}" not in BY_NAME:
            choices = _targets(action)
            raise self.error(at, _unknown(f"resource to {kind}", target, choices))
        return BY_NAME[f"{target}.{action}"]

    def fields(
        self, raw: Any, at: Path_, ep: Endpoint, where: tuple[str, ...], known: Collection[str]
    ) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise self.error(at, f"{at[-1]} maps field names to values")
        takes = {
            name
            for name, places in endpoint_fields(ep).items()
            if any(loc in where for loc, _ in places)
        }
        for key in raw:
            if key not in takes:
                raise self.error((*at, key), _unknown(f"field of {ep.name}", key, takes))
        return cast(dict[str, Any], self.value(raw, at, known))

    def write(
        self,
        kind: str,
        raw: dict[str, Any],
        at: Path_,
        name: str,
        line: int,
        skip: Skip,
        known: Collection[str],
    ) -> WriteStep:
        ep = self.endpoint(kind, raw[kind], (*at, kind), kind)
        fields = self.fields(raw.get("fields"), (*at, "fields"), ep, ("body",), known)
        if kind != "delete" and not fields:
            raise self.error(at, f"a {kind} step needs fields:")
        ident = None
        if kind == "create":
            if "id" in raw:
                raise self.error((*at, "id"), "create makes a new object: it takes no id")
        else:
            if raw.get("id") in (None, ""):
                raise self.error(at, f"an {kind} step needs id: (the object's id, a template)")
            ident = self.value(raw["id"], (*at, "id"), known)
        match = raw.get("match")
        if match is not None:
            if (
                not isinstance(match, list)
                or not match
                or not all(isinstance(m, str) and m in fields for m in match)
            ):
                raise self.error((*at, "match"), "match lists fields of this step's fields:")
            match = tuple(match)
        return WriteStep(
            name=name,
            line=line,
            skip_if=skip,
            kind=cast(Any, kind),
            endpoint=ep,
            fields=fields,
            id=ident,
            match=match,
        )

    def find(
        self,
        raw: dict[str, Any],
        at: Path_,
        name: str,
        line: int,
        skip: Skip,
        known: Collection[str],
    ) -> FindStep:
        action = "get" if "id" in raw else "list"
        ep = self.endpoint("find", raw["find"], (*at, "find"), action)
        if "id" in raw and ("where" in raw or "filter" in raw or "limit" in raw):
            raise self.error((*at, "id"), "find by id: takes no where:, filter: or limit:")
        where = self.fields(raw.get("where"), (*at, "where"), ep, ("params",), known)
        where.pop("_skip", None)
        ident = self.value(raw["id"], (*at, "id"), known) if "id" in raw else None
        item_known = {*known, "item"}
        flt = self.skip(raw.get("filter"), (*at, "filter"), item_known)
        limit = raw.get("limit")
        if limit is not None:
            limit = self.value(limit, (*at, "limit"), known)
            if not isinstance(limit, Template) and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                raise self.error((*at, "limit"), "limit is a count >= 1 (or a template)")
        or_fail = raw.get("or_fail")
        if or_fail is not None:
            if not isinstance(or_fail, str) or not or_fail.strip():
                raise self.error((*at, "or_fail"), "or_fail is the message the run fails with")
            or_fail = self.value(or_fail, (*at, "or_fail"), known)
        return FindStep(
            name=name,
            line=line,
            skip_if=skip,
            endpoint=ep,
            where=where,
            id=ident,
            filter=flt,
            limit=limit,
            or_fail=or_fail,
        )

    def llm(
        self,
        raw: dict[str, Any],
        at: Path_,
        name: str,
        line: int,
        skip: Skip,
        known: Collection[str],
    ) -> LlmStep:
        prompt = raw["llm"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise self.error((*at, "llm"), "llm: takes the prompt (text, may be a template)")
        output = raw.get("output")
        if output is not None:
            if not isinstance(output, dict) or not output:
                raise self.error((*at, "output"), "output maps field names to types")
            for key, kind in output.items():
                if not _STEP_NAME.match(str(key)):
                    raise self.error((*at, "output", key), f"output field {key!r}: use a-z, 0-9, _")
                if not isinstance(kind, str) or kind not in OUTPUT_TYPES:
                    raise self.error(
                        (*at, "output", key), _unknown("output type", kind, OUTPUT_TYPES)
                    )
        return LlmStep(
            name=name,
            line=line,
            skip_if=skip,
            prompt=self.value(prompt, (*at, "llm"), known),
            output=output,
        )

    def agent(
        self,
        raw: dict[str, Any],
        at: Path_,
        name: str,
        line: int,
        skip: Skip,
        known: Collection[str],
    ) -> AgentStep:
        instruction = raw["agent"]
        if not isinstance(instruction, str) or not instruction.strip():
            raise self.error(
                (*at, "agent"), "agent: takes the instruction (text, may be a template)"
            )
        source = raw.get("policy")
        if not isinstance(source, str) or not source:
            raise self.error(
                at, "an agent step needs policy: (a shipped policy name or a policy file)"
            )
        policy = self.load_policy(source, (*at, "policy"))
        assert self.agent_max is not None
        wider = wider_than(policy, self.agent_max)
        if wider:
            raise self.error(
                (*at, "policy"),
                f"agent policy {policy.name!r} is wider than agent_policy_max "
                f"{self.agent_max.name!r}: {wider[0]}"
                + (f" (and {len(wider) - 1} more)" if len(wider) > 1 else ""),
            )
        turns = raw.get("max_turns", 8)
        if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= 50:
            raise self.error((*at, "max_turns"), "max_turns is a count from 1 to 50")
        return AgentStep(
            name=name,
            line=line,
            skip_if=skip,
            instruction=self.value(instruction, (*at, "agent"), known),
            policy=policy,
            max_turns=turns,
        )

    def for_each(
        self, raw: dict[str, Any], at: Path_, name: str, line: int, skip: Skip, scope: set[str]
    ) -> ForEachStep:
        known = self.known(scope)
        items = raw["for_each"]
        if isinstance(items, str) and "{" not in items:
            items = "{{ " + items + " }}"
        items = self.value(items, (*at, "for_each"), known)
        if not isinstance(items, Template):
            raise self.error(
                (*at, "for_each"), "for_each names a list: a step's result or a template"
            )
        item = raw.get("item", "item")
        if not isinstance(item, str) or not _STEP_NAME.match(item) or item in known:
            raise self.error((*at, "item"), f"item: a new name for each element, not {shown(item)}")
        limit = raw.get("limit")
        if limit is not None:
            limit = self.value(limit, (*at, "limit"), known)
            if not isinstance(limit, Template) and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                raise self.error((*at, "limit"), "limit is a count >= 1 (or a template)")
        inner = self.steps(raw.get("steps"), (*at, "steps"), {*scope, item})
        if any(isinstance(s, ForEachStep) for s in inner):
            raise self.error((*at, "steps"), "for_each steps cannot hold another for_each")
        if any(isinstance(s, WriteStep) for s in inner) and limit is None:
            raise self.error(
                at, "a for_each that writes needs limit: (the most items one run may act on)"
            )
        return ForEachStep(
            name=name, line=line, skip_if=skip, items=items, item=item, steps=inner, limit=limit
        )


def _names(value: Any) -> frozenset[str]:
    return names_in(value)
