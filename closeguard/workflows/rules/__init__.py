"""Workflow rules in YAML: trigger, conditions and steps, with a derived least-privilege policy.

A rule file holds one rule or a list; ``rule_workflows(file)`` loads it into
``RuleWorkflow``s (ordinary ``Workflow``s, run by the same runtime) whose policy is the
one ``derive_policy`` computes from the steps. ``RULE_SCHEMA`` is the JSON Schema of the
format (``closeguard workflows schema``); ``docs/rules.md`` is the reference.
"""

from __future__ import annotations

from pathlib import Path

from closeguard.workflows.rules.derive import derive_policy, policy_data, step_kinds, wider_than
from closeguard.workflows.rules.model import (
    AgentStep,
    FindStep,
    ForEachStep,
    LlmStep,
    Rule,
    RuleStep,
    WriteStep,
)
from closeguard.workflows.rules.parse import RuleTrigger, parse_rules, read_rules
from closeguard.workflows.rules.run import RuleFailed, RuleWorkflow, compile_rule
from closeguard.workflows.rules.schema import RULE_SCHEMA
from closeguard.workflows.rules.template import money

__all__ = [
    "RULE_SCHEMA",
    "AgentStep",
    "FindStep",
    "ForEachStep",
    "LlmStep",
    "Rule",
    "RuleFailed",
    "RuleStep",
    "RuleTrigger",
    "RuleWorkflow",
    "WriteStep",
    "compile_rule",
    "derive_policy",
    "load_rules_text",
    "money",
    "parse_rules",
    "policy_data",
    "read_rules",
    "rule_workflows",
    "step_kinds",
    "wider_than",
]


def rule_workflows(file: Path, *, packaged: bool = False) -> list[tuple[RuleWorkflow, int]]:
    """The rules of a YAML file as workflows under their derived policies, with lines
    (``packaged``: closeguard's own file, see ``parse_rules``)."""
    rules = read_rules(file, packaged=packaged)
    return [(compile_rule(rule, derive_policy(rule)), line) for rule, line in rules]


def load_rules_text(text: str, file: str = "<rule>") -> list[RuleWorkflow]:
    """The rules in YAML ``text`` as workflows (tests, and rules kept in other files)."""
    return [compile_rule(rule, derive_policy(rule)) for rule, _ in parse_rules(text, file)]
