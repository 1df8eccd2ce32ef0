"""Conditions on values: field matchers combined with ``all``, ``any`` and ``not``.

One grammar serves every place a rule looks at values: a policy's ``when:`` on an
``approve`` or ``deny`` entry (the call's arguments) and a workflow rule's ``if:`` (an
event's data). In YAML::

    {value: {min: 5000000}}                          # one field; all its matchers hold
    {value: {min: 1}, status_id: {in: [stat_a]}}      # several fields: all of them hold
    {any: [{value: {min: 5000000}}, {status_type: {in: [won]}}]}
    {all: [...]}   {not: {...}}

Field names may be dotted paths into nested mappings (``previous_data.status_id``).
Matchers: ``in`` / ``not_in`` (a list of values), ``equals``, ``min`` / ``max`` (numbers;
numeric text is compared as a number), ``matches`` (a regular expression searched in the
text; anchor it with ``^...$``), ``required`` (``true``: the field is present and not
null; ``false``: it is absent or null). A field that is absent (or null) matches no
matcher but ``required: false``, so a condition on a field a call does not send does not
hold. ``parse_condition`` refuses mistakes with the file and line of the YAML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from closeguard.guardrails._yaml import Lines, shown
from closeguard.tools.errors import ConfigError

__all__ = [
    "MATCHERS",
    "AllOf",
    "AnyOf",
    "Condition",
    "FieldCondition",
    "Matcher",
    "Not",
    "describe",
    "lookup",
    "parse_condition",
]

MATCHERS = ("in", "not_in", "equals", "min", "max", "matches", "required")
COMBINATORS = ("all", "any", "not")
_ABSENT = object()

Path_ = tuple[str | int, ...]


class Condition(Protocol):
    """A parsed condition: decides on a mapping of values and shows itself as YAML."""

    def evaluate(self, data: Mapping[str, Any]) -> bool: ...

    def fields(self) -> frozenset[str]: ...

    def as_yaml(self) -> Any: ...


def lookup(data: Mapping[str, Any], field: str) -> Any:
    """The value at a dotted ``field`` of ``data``, or ``_ABSENT``."""
    value: Any = data
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@dataclass(frozen=True)
class Matcher:
    """One test on one value: ``kind`` is one of ``MATCHERS``."""

    kind: str
    value: Any
    pattern: re.Pattern[str] | None = None

    def test(self, value: Any) -> bool:
        if self.kind == "required":
            return bool((value is not _ABSENT and value is not None) == self.value)
        if value is _ABSENT or value is None:
            return False
        if self.kind == "in":
            return any(_same(value, v) for v in self.value)
        if self.kind == "not_in":
            return not any(_same(value, v) for v in self.value)
        if self.kind == "equals":
            return _same(value, self.value)
        if self.kind in ("min", "max"):
            number = _number(value)
            if number is None:
                return False
            return bool(number >= self.value if self.kind == "min" else number <= self.value)
        assert self.pattern is not None
        return isinstance(value, str) and self.pattern.search(value) is not None


def _same(value: Any, expected: Any) -> bool:
    """Equality where ``True`` is not ``1`` and a number equals its numeric text."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    if isinstance(expected, int | float) and not isinstance(value, int | float):
        return bool(_number(value) == expected)
    return bool(value == expected)


@dataclass(frozen=True)
class FieldCondition:
    """All ``matchers`` hold for the value at ``field``."""

    field: str
    matchers: tuple[Matcher, ...]

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        value = lookup(data, self.field)
        return all(m.test(value) for m in self.matchers)

    def fields(self) -> frozenset[str]:
        return frozenset({self.field})

    def as_yaml(self) -> Any:
        return {
            self.field: {
                m.kind: list(m.value) if isinstance(m.value, tuple) else m.value
                for m in self.matchers
            }
        }


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        return all(c.evaluate(data) for c in self.items)

    def fields(self) -> frozenset[str]:
        return frozenset().union(*(c.fields() for c in self.items))

    def as_yaml(self) -> Any:
        if all(isinstance(c, FieldCondition) for c in self.items):
            merged: dict[str, Any] = {}
            for c in self.items:
                merged.update(c.as_yaml())
            if len(merged) == len(self.items):
                return merged
        return {"all": [c.as_yaml() for c in self.items]}


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        return any(c.evaluate(data) for c in self.items)

    def fields(self) -> frozenset[str]:
        return frozenset().union(*(c.fields() for c in self.items))

    def as_yaml(self) -> Any:
        return {"any": [c.as_yaml() for c in self.items]}


@dataclass(frozen=True)
class Not:
    item: Condition

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        return not self.item.evaluate(data)

    def fields(self) -> frozenset[str]:
        return self.item.fields()

    def as_yaml(self) -> Any:
        return {"not": self.item.as_yaml()}


def describe(condition: Condition) -> str:
    """The condition in YAML's flow form, as it would be written (``{value: {min: 5000000}}``)."""
    text: str = yaml.safe_dump(
        condition.as_yaml(), default_flow_style=True, sort_keys=False, width=10**6
    )
    return text.strip()


def parse_condition(
    raw: Any,
    lines: Lines | None = None,
    path: Path_ = (),
    *,
    where: str = "when",
    known_fields: Collection[str] | None = None,
) -> Condition:
    """Parse ``raw`` (YAML data) into a condition; ``ConfigError`` with file and line if wrong.

    ``known_fields``, when given, lists the first parts of field names that exist (an
    endpoint's arguments, an event's keys): any other name is refused as a likely typo.
    """
    return _Parser(lines or Lines("<condition>"), where, known_fields).parse(raw, path)


class _Parser:
    def __init__(self, lines: Lines, where: str, known: Collection[str] | None) -> None:
        self.lines = lines
        self.where = where
        self.known = None if known is None else frozenset(known)

    def error(self, path: Path_, message: str) -> ConfigError:
        return self.lines.error(path, f"{self.where}: {message}")

    def parse(self, raw: Any, path: Path_) -> Condition:
        if not isinstance(raw, dict) or not raw:
            raise self.error(
                path, f"a condition is a mapping like {{value: {{min: 1}}}}, not {shown(raw)}"
            )
        items: list[Condition] = []
        for key, value in raw.items():
            sub = (*path, key)
            if key in ("all", "any"):
                if not isinstance(value, list) or not value:
                    raise self.error(sub, f"{key} takes a non-empty list of conditions")
                parts = tuple(self.parse(v, (*sub, i)) for i, v in enumerate(value))
                items.append(AllOf(parts) if key == "all" else AnyOf(parts))
            elif key == "not":
                items.append(Not(self.parse(value, sub)))
            else:
                items.append(self.field(key, value, sub))
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def field(self, name: str, rule: Any, path: Path_) -> FieldCondition:
        if not name or not name.isprintable() or any(not part for part in name.split(".")):
            raise self.error(path, f"{name!r} is not a field name")
        if self.known is not None and name.split(".")[0] not in self.known:
            raise self.error(
                path, f"unknown field {name!r}; known: {', '.join(sorted(self.known))}"
            )
        if not isinstance(rule, dict) or not rule:
            raise self.error(
                path, f"{name}: matchers are a mapping like {{in: [...]}} or {{min: 5}}"
            )
        matchers = tuple(self.matcher(name, k, v, (*path, k)) for k, v in rule.items())
        bounds = {m.kind: m.value for m in matchers if m.kind in ("min", "max")}
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise self.error(path, f"{name}: min {bounds['min']} > max {bounds['max']}")
        return FieldCondition(name, matchers)

    def matcher(self, name: str, kind: str, value: Any, path: Path_) -> Matcher:
        if kind not in MATCHERS:
            hint = " (all/any/not combine conditions, not matchers)" if kind in COMBINATORS else ""
            raise self.error(
                path, f"{name}: unknown matcher {kind!r}; use one of {', '.join(MATCHERS)}{hint}"
            )
        if kind in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise self.error(path, f"{name}.{kind} takes a non-empty list of values")
            return Matcher(kind, tuple(value))
        if kind in ("min", "max"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(path, f"{name}.{kind} must be a number, not {shown(value)}")
            return Matcher(kind, value)
        if kind == "required":
            if not isinstance(value, bool):
                raise self.error(path, f"{name}.required must be true or false")
            return Matcher(kind, value)
        if kind == "matches":
            if not isinstance(value, str):
                raise self.error(path, f"{name}.matches takes a regular expression (text)")
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise self.error(path, f"{name}.matches: bad regular expression: {exc}") from exc
            return Matcher(kind, value, pattern)
        return Matcher(kind, value)
