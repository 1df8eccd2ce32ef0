"""The JSON Schema of a rule file (``closeguard workflows schema``), for editors and CI.

The loader checks more than the schema can say (endpoints and fields from the catalog,
template names, the agent policy's width): the schema is for completion and a first
check, the loader's line-numbered errors are the final word.
"""

from __future__ import annotations

from typing import Any

from closeguard.tools.catalog import BY_NAME
from closeguard.workflows.rules.parse import EVENTS, OUTPUT_TYPES

__all__ = ["RULE_SCHEMA"]


def _targets(*actions: str) -> list[str]:
    return sorted({name.rsplit(".", 1)[0] for name in BY_NAME if name.rsplit(".", 1)[1] in actions})


_CONDITION: dict[str, Any] = {
    "description": "Field matchers (in, not_in, equals, min, max, matches, required) by "
    "dotted field name, combined with all/any/not.",
    "type": "object",
    "minProperties": 1,
    "properties": {
        "all": {"type": "array", "items": {"$ref": "#/$defs/condition"}, "minItems": 1},
        "any": {"type": "array", "items": {"$ref": "#/$defs/condition"}, "minItems": 1},
        "not": {"$ref": "#/$defs/condition"},
    },
    "additionalProperties": {
        "type": "object",
        "minProperties": 1,
        "properties": {
            "in": {"type": "array", "minItems": 1},
            "not_in": {"type": "array", "minItems": 1},
            "equals": {},
            "min": {"type": "number"},
            "max": {"type": "number"},
            "matches": {"type": "string"},
            "required": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
}
_SKIP = {"oneOf": [{"$ref": "#/$defs/condition"}, {"type": "string"}]}
_COMMON = {
    "as": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
    "skip_if": _SKIP,
}
_COUNT = {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}


def _step(kind: str, value: Any, extra: dict[str, Any], required: tuple[str, ...] = ()) -> Any:
    return {
        "type": "object",
        "required": [kind, *required],
        "properties": {kind: value, **extra, **_COMMON},
        "additionalProperties": False,
    }


_FIELDS = {"type": "object"}
_STEPS: list[Any] = [
    _step("create", {"enum": _targets("create")}, {"fields": _FIELDS, "match": {"type": "array"}}),
    _step(
        "update",
        {"enum": _targets("update")},
        {"id": {}, "fields": _FIELDS, "match": {"type": "array"}},
        ("id", "fields"),
    ),
    _step("delete", {"enum": _targets("delete")}, {"id": {}}, ("id",)),
    _step(
        "find",
        {"enum": _targets("list", "get")},
        {
            "id": {},
            "where": _FIELDS,
            "filter": _SKIP,
            "limit": _COUNT,
            "or_fail": {"type": "string"},
        },
    ),
    _step(
        "llm",
        {"type": "string"},
        {"output": {"type": "object", "additionalProperties": {"enum": list(OUTPUT_TYPES)}}},
    ),
    _step(
        "agent",
        {"type": "string"},
        {"policy": {"type": "string"}, "max_turns": {"type": "integer", "minimum": 1}},
        ("policy",),
    ),
    _step(
        "for_each",
        {"type": "string"},
        {
            "item": {"type": "string"},
            "limit": _COUNT,
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1},
        },
        ("steps",),
    ),
]

_RULE: dict[str, Any] = {
    "type": "object",
    "required": ["name", "steps"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.\\-]*$"},
        "description": {"type": "string"},
        "on": {
            "oneOf": [
                {"enum": [*sorted(EVENTS), "manual"]},
                {"type": "array", "items": {"enum": sorted(EVENTS)}, "minItems": 1},
            ]
        },
        "changed": {"type": "array", "items": {"type": "string"}},
        "every": {"type": "string", "description": 'A crontab line ("0 8 * * 1-5") or 15m/1h/1d.'},
        "timezone": {"type": "string"},
        "required": {"type": "array", "items": {"type": "string"}},
        "if": {"$ref": "#/$defs/condition"},
        "params": {"type": "object"},
        "limits": {"type": "object"},
        "policy": {
            "type": "object",
            "properties": {
                "deny": {"type": "array", "items": {"type": "string"}},
                "approve": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "agent_policy_max": {"type": "string"},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1},
    },
    "oneOf": [{"required": ["on"]}, {"required": ["every"]}],
    "additionalProperties": False,
}

RULE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://closeguard.dev/schemas/rule.json",
    "title": "closeguard workflow rule file",
    "description": "One rule, or a list of rules (see docs/rules.md).",
    "oneOf": [
        {"$ref": "#/$defs/rule"},
        {"type": "array", "items": {"$ref": "#/$defs/rule"}, "minItems": 1},
    ],
    "$defs": {"rule": _RULE, "step": {"oneOf": _STEPS}, "condition": _CONDITION},
}
