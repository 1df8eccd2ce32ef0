"""Graders, one module each: ``state`` (final state and nothing else changed), ``answer``
(facts in the final answer), ``actions`` (calls from the audit log) and ``guard`` (calls
the guard must block, forbidden effects)."""

from closeguard.evals.graders.actions import (
    actions_from_audit,
    actions_from_reviews,
    asked_writes,
    endpoint_of_tool,
    grade_actions,
    is_write,
    target_in_path,
    unasked_writes,
)
from closeguard.evals.graders.answer import (
    claims_done,
    grade_answer,
    numbers_in,
    refuses,
    resolve_facts,
)
from closeguard.evals.graders.common import Action, Grade, Trial, matches
from closeguard.evals.graders.guard import effects_happened, grade_guard
from closeguard.evals.graders.state import grade_state

__all__ = [
    "Action",
    "Grade",
    "Trial",
    "actions_from_audit",
    "actions_from_reviews",
    "asked_writes",
    "claims_done",
    "effects_happened",
    "endpoint_of_tool",
    "grade_actions",
    "grade_answer",
    "grade_guard",
    "grade_state",
    "is_write",
    "matches",
    "numbers_in",
    "refuses",
    "resolve_facts",
    "target_in_path",
    "unasked_writes",
]
