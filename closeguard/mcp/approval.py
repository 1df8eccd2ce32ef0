"""Asking an MCP client's user to approve one exact call, in either protocol era.

Up to 2025-11-25 the server sends ``elicitation/create`` in the middle of the tool call.
From 2026-07-28 it answers the call with an ``InputRequiredResult`` carrying the question,
and the client calls again with the user's answer. The answer is never trusted to name the
approval: the call is re-checked, and the guard's own pending approval for exactly these
arguments is the one decided.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from closeguard.mcp.tools import McpTool
from closeguard.tools.errors import ApprovalRequired

__all__ = [
    "INPUT_KEY",
    "QUESTION_SCHEMA",
    "Answer",
    "answer_of",
    "approval_question",
    "can_elicit",
    "modern",
    "question_request",
]

INPUT_KEY = "closeguard_approval"
"""The key of the approval question in an ``InputRequiredResult`` and its answers."""

Answer = Literal["accept", "decline", "cancel"]

QUESTION_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
"""Nothing to fill in: the user accepts or declines the call as shown."""


def modern(protocol_version: str) -> bool:
    """Whether questions ride an ``InputRequiredResult`` rather than a mid-call request."""
    return protocol_version in MODERN_PROTOCOL_VERSIONS


def can_elicit(capabilities: types.ClientCapabilities | None) -> bool:
    """Whether the client said it can show a form to its user."""
    found = capabilities.elicitation if capabilities is not None else None
    return found is not None and (found.form is not None or found.url is None)


def approval_question(
    tool: McpTool, args: dict[str, Any], path_params: dict[str, str], exc: ApprovalRequired
) -> str:
    """What the user is asked: the endpoint, the exact arguments, the access level, why."""
    ep = tool.endpoint
    decision = exc.decision
    access = getattr(decision, "access", None) or ep.access
    rule = getattr(decision, "rule", None) or "approve"
    reason = getattr(decision, "reason", None) or "the policy asks a person first"
    shown = json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
    return (
        f"closeguard: approve this {access.upper()} call?\n"
        f"tool: {tool.name} ({ep.name})\n"
        f"request: {ep.method} /api/v1{ep.format_path(**path_params)}\n"
        f"arguments: {shown}\n"
        f"access: {access}\n"
        f"why it needs approval: {reason} (rule {rule})\n"
        f"approval: {exc.approval_id}\n"
        "Accept runs exactly this call once; decline or cancel runs nothing."
    )


def question_request(message: str) -> types.ElicitRequest:
    """The form-mode elicitation for ``message``."""
    return types.ElicitRequest(
        params=types.ElicitRequestFormParams(message=message, requested_schema=QUESTION_SCHEMA)
    )


def answer_of(result: types.ElicitResult | Any) -> Answer:
    """accept / decline / cancel from an elicitation result (anything else is a cancel)."""
    action = getattr(result, "action", None)
    return action if action in ("accept", "decline") else "cancel"
