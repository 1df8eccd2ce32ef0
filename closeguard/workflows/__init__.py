"""Workflows: sales-ops rules that run on Close events, schedules or by hand.

Holds workflow definitions (``definition``), rules written in YAML with their policy
derived from their steps (``rules``), the packaged library (``library``, one workflow a
file) and the loader for a user's own modules and rules (``loader``), their triggers
(Close webhooks, Event Log catch-up, APScheduler schedules), and the runtime: webhook
receiver, durable inbox, run queue, effect journal and workers, so nothing is lost when a
process dies or a webhook is missed. Depends on ``tools``, ``guardrails``, ``agent`` and
``store``. Exports load on first use (module ``__getattr__``): listing the workflows does
not import the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeguard.tools._lazy import lazy_exports

if TYPE_CHECKING:
    from closeguard.workflows.definition import (
        Context,
        EventTrigger,
        ManualTrigger,
        ScheduleTrigger,
        Step,
        Trigger,
        Workflow,
    )
    from closeguard.workflows.inbox import Inbox
    from closeguard.workflows.loader import load_workflows, packaged_workflows
    from closeguard.workflows.queue import RunQueue, SqlRunQueue
    from closeguard.workflows.rules import RuleWorkflow, derive_policy, rule_workflows
    from closeguard.workflows.runtime import Runtime, RuntimeConfig
    from closeguard.workflows.testing import RunResult, resume_workflow, run_workflow

_LAZY = {
    "Context": "definition",
    "EventTrigger": "definition",
    "ManualTrigger": "definition",
    "ScheduleTrigger": "definition",
    "Step": "definition",
    "Trigger": "definition",
    "Workflow": "definition",
    "Inbox": "inbox",
    "load_workflows": "loader",
    "packaged_workflows": "loader",
    "RunQueue": "queue",
    "SqlRunQueue": "queue",
    "RuleWorkflow": "rules",
    "derive_policy": "rules",
    "rule_workflows": "rules",
    "Runtime": "runtime",
    "RuntimeConfig": "runtime",
    "RunResult": "testing",
    "resume_workflow": "testing",
    "run_workflow": "testing",
}
"""Export -> the module of this package that defines it, imported on first access."""


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "Context",
    "EventTrigger",
    "Inbox",
    "ManualTrigger",
    "RuleWorkflow",
    "RunQueue",
    "RunResult",
    "Runtime",
    "RuntimeConfig",
    "ScheduleTrigger",
    "SqlRunQueue",
    "Step",
    "Trigger",
    "Workflow",
    "derive_policy",
    "load_workflows",
    "packaged_workflows",
    "resume_workflow",
    "rule_workflows",
    "run_workflow",
]
