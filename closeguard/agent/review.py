"""Checking proposed tool calls before anything runs, and reading a person's answers.

The review uses the same ``Guard`` and the same approval store as the transport, on the
same classified call (arguments turned into the exact query and body the client sends),
so an approval granted here is the one the transport consumes for that call, and one
granted with ``closeguard approvals approve ID`` is honoured here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ValidationError

from closeguard.guardrails import Decision, Guard, RunContext
from closeguard.tools import ENDPOINTS, Call, Endpoint, classify
from closeguard.tools.access import Access
from closeguard.tools.langchain import split_arguments, tool_name

__all__ = [
    "ANSWERS",
    "Answer",
    "AnswerError",
    "Prepared",
    "offered_endpoints",
    "parse_answer",
    "prepare",
    "validate_args",
]

ANSWERS = ("approve", "edit", "reject")
Action = Literal["approve", "edit", "reject", "check"]
_LEVELS: tuple[Access, ...] = ("read", "write", "destructive")


class AnswerError(ValueError):
    """An answer to an approval that cannot be used; the person is asked again."""


def offered_endpoints(guard: Guard, endpoints: Iterable[Endpoint] = ENDPOINTS) -> list[Endpoint]:
    """Endpoints the policy could allow at some access level (default deny for the rest)."""
    out = []
    for ep in endpoints:
        for level in _LEVELS:
            try:
                decision = guard.static(ep.name, level)
            except KeyError:
                continue
            if not decision.denied:
                out.append(ep)
                break
    return out


@dataclass(frozen=True)
class Prepared:
    """A tool call turned into the request the client will send, classified."""

    endpoint: Endpoint
    args: dict[str, Any]
    call: Call
    path: str

    def decide(self, guard: Guard, context: RunContext) -> Decision:
        decision = guard.check(self.call, context)
        if guard.policy.mode == "dry_run" and self.call.access != "read" and not decision.denied:
            return Decision(
                "allow",
                decision.rule,
                "dry run: the write is faked",
                decision.endpoint,
                decision.access,
            )
        return decision


def _query(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The query as the client encodes it and the transport reads it back (text values)."""
    out: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            value = ",".join(str(v) for v in value)
        out[key] = value
    return dict(httpx.Request("GET", "http://close.invalid/", params=out).url.params)


def validate_args(tool: BaseTool, args: Any) -> dict[str, Any]:
    """Arguments checked against the tool's schema; ``AnswerError`` says what is wrong."""
    if not isinstance(args, Mapping):
        raise AnswerError(f"arguments for {tool.name} must be an object, not {args!r}")
    schema = tool.args_schema
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            schema.model_validate(dict(args))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise AnswerError(f"invalid arguments for {tool.name}: {problems}") from None
    return dict(args)


def prepare(ep: Endpoint, args: dict[str, Any]) -> Prepared:
    """Classify ``args`` for ``ep`` exactly as the transport will see the request."""
    try:
        path_params, params, body = split_arguments(ep, args)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        raise AnswerError(f"invalid arguments for {tool_name(ep)}: {exc}") from None
    path = ep.format_path(**{p: quote(v, safe="") for p, v in path_params.items()})
    sent_body = json.loads(json.dumps(body)) if body is not None else None
    call = classify(ep.method, path, sent_body, _query(params))
    return Prepared(ep, args, call, path)


@dataclass(frozen=True)
class Answer:
    """One person's answer to one approval interrupt."""

    action: Action
    args: dict[str, Any] | None = None
    message: str | None = None
    by: str | None = None


def parse_answer(raw: Any) -> Answer:
    """``"approve"``, ``"reject"``, ``{"action": "edit", "args": {...}}``, ``{"action":
    "reject", "message": "..."}``; ``"check"`` takes the answer from the approval store."""
    if isinstance(raw, str):
        raw = {"action": raw}
    if not isinstance(raw, Mapping):
        raise AnswerError(f"an answer is an action name or an object, not {raw!r}")
    action = raw.get("action") or raw.get("type")
    if action not in (*ANSWERS, "check"):
        raise AnswerError(f"action must be one of {', '.join(ANSWERS)} (or check), not {action!r}")
    extra = set(raw) - {"action", "type", "args", "message", "by"}
    if extra:
        raise AnswerError(f"unknown answer field(s): {', '.join(sorted(extra))}")
    args = raw.get("args")
    if action == "edit" and not isinstance(args, Mapping):
        raise AnswerError("edit needs the new arguments as an object in 'args'")
    message = raw.get("message")
    by = raw.get("by")
    return Answer(
        action,
        dict(args) if isinstance(args, Mapping) else None,
        str(message) if message else None,
        str(by) if by else None,
    )
