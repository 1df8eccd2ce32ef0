"""What a rule is once loaded: trigger, condition, steps, parameters, limits, narrowing.

Templated values are ``Template`` objects (``rules.template``) inside plain data; every
step knows the YAML line it was written on, so a failure at run time names it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from closeguard.guardrails import Policy
from closeguard.guardrails.conditions import Condition
from closeguard.tools.catalog import Endpoint
from closeguard.workflows.definition import EventTrigger, Trigger
from closeguard.workflows.rules.template import Template

__all__ = [
    "AgentStep",
    "FindStep",
    "ForEachStep",
    "LlmStep",
    "Rule",
    "RuleStep",
    "Skip",
    "WriteStep",
]

Skip = Condition | Template | None
"""``skip_if``: a condition over the values so far, or a template whose truth skips."""


@dataclass(frozen=True)
class _Base:
    name: str
    """``as:``, the name later steps read the result by (default ``stepN``)."""
    line: int
    skip_if: Skip


@dataclass(frozen=True)
class WriteStep(_Base):
    """``create``, ``update`` or ``delete`` of one catalog object."""

    kind: Literal["create", "update", "delete"]
    endpoint: Endpoint
    fields: Mapping[str, Any]
    id: Any = None
    match: tuple[str, ...] | None = None
    """The fields the read-back compares (default: every plain field sent)."""


@dataclass(frozen=True)
class FindStep(_Base):
    """A read: one object by ``id`` or a list filtered by ``where`` (and ``filter``)."""

    endpoint: Endpoint
    where: Mapping[str, Any] = field(default_factory=dict)
    id: Any = None
    filter: Skip = None
    limit: Any = None
    or_fail: Template | str | None = None


@dataclass(frozen=True)
class LlmStep(_Base):
    """A prompt to the configured model, answered as the ``output`` fields (JSON)."""

    prompt: Template | str
    output: Mapping[str, str] | None


@dataclass(frozen=True)
class AgentStep(_Base):
    """An instruction for the closeguard agent, run under its own named policy."""

    instruction: Template | str
    policy: Policy
    max_turns: int = 8


@dataclass(frozen=True)
class ForEachStep(_Base):
    """Its ``steps`` once per item of ``items``, the item named ``item``."""

    items: Any
    item: str
    steps: tuple[RuleStep, ...]
    limit: Any = None


RuleStep = WriteStep | FindStep | LlmStep | AgentStep | ForEachStep


@dataclass(frozen=True)
class Rule:
    """A loaded rule: everything ``compile_rule`` and ``derive_policy`` need."""

    name: str
    trigger: Trigger
    condition: Condition | None
    steps: tuple[RuleStep, ...]
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    deny: tuple[str, ...] = ()
    approve: tuple[str, ...] = ()
    agent_policy_max: str = "sales-rep"
    context: frozenset[str] = frozenset()
    """Which of ``lead``, ``deal``, ``user`` the templates read (fetched before step 1)."""
    file: str = "<rule>"
    line: int = 1
    limits_line: int = 1

    @property
    def event_triggered(self) -> bool:
        return isinstance(self.trigger, EventTrigger)
