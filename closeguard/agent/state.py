"""The agent graph's state: the conversation, the run's counters and each call's review.

``reviews`` maps a tool call id to what the review decided for it. It is the only thing
the ``tools`` node trusts: a call without an ``approved`` review never runs, whatever
path led to the node, and a call that already has its ``ToolMessage`` never runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps

__all__ = ["AgentState", "Limits", "Review", "Usage", "merge_reviews", "merge_usage"]

Verdict = Literal["pending", "run", "refused", "rejected"]


class Review(TypedDict, total=False):
    """The outcome of reviewing one tool call.

    ``status``: ``pending`` (waiting for a person; ``approval_id`` says which approval),
    ``run`` (allowed or approved: the tools node executes ``args``),
    ``refused`` (denied, unavailable, invalid or over a limit) or ``rejected`` (a person
    said no). ``message`` is what the model is told instead of a result.
    """

    status: Verdict
    tool: str
    args: dict[str, Any]
    message: str
    rule: str
    approval_id: str | None
    decided_by: str | None


class Usage(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    total_tokens: int


def merge_reviews(
    old: dict[str, Review] | None, new: dict[str, Review] | None
) -> dict[str, Review]:
    return {**(old or {}), **(new or {})}


def merge_usage(old: Usage | None, new: Usage | None) -> Usage:
    a, b = old or Usage(), new or Usage()
    return Usage(
        input_tokens=a.get("input_tokens", 0) + b.get("input_tokens", 0),
        output_tokens=a.get("output_tokens", 0) + b.get("output_tokens", 0),
        total_tokens=a.get("total_tokens", 0) + b.get("total_tokens", 0),
    )


class AgentState(TypedDict, total=False):
    """What the graph checkpoints per thread."""

    messages: Annotated[list[AnyMessage], add_messages]
    run_id: str
    turns: int
    calls: int
    stopped: str | None
    reviews: Annotated[dict[str, Review], merge_reviews]
    usage: Annotated[Usage, merge_usage]
    remaining_steps: RemainingSteps


@dataclass(frozen=True)
class Limits:
    """Per run (one user message and everything it sets off): model turns and tool calls."""

    max_turns: int = 12
    max_tool_calls: int = 30

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_tool_calls < 0:
            raise ValueError("max_turns must be >= 1 and max_tool_calls >= 0")
