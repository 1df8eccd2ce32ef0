"""Graders, one module each: ``state`` (final state and nothing else changed), ``answer``
(facts in the final answer), ``actions`` (calls from the audit log) and ``guard`` (calls
the guard must block, forbidden effects)."""

from closeguard.evals.graders.actions import (
    actions_from_audit,
    actions_from_reviews,
    grade_actions,
)
from closeguard.evals.graders.answer import grade_answer
from closeguard.evals.graders.common import Action, Grade, Trial
from closeguard.evals.graders.guard import effects_happened, grade_guard
from closeguard.evals.graders.state import grade_state

__all__ = [
    "Action",
    "Grade",
    "Trial",
    "actions_from_audit",
    "actions_from_reviews",
    "effects_happened",
    "grade_actions",
    "grade_answer",
    "grade_guard",
    "grade_state",
]
