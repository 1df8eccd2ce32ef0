"""The answer grader: the facts a chat task's final answer must contain."""

from __future__ import annotations

import re

from closeguard.evals.format import Expect
from closeguard.evals.graders.common import Grade, Trial

__all__ = ["grade_answer", "normalize"]


def normalize(text: str) -> str:
    """Lower case, one space between words: facts match however the model spaces them."""
    return re.sub(r"\s+", " ", text).strip().lower()


def grade_answer(trial: Trial, expect: Expect) -> Grade:
    grade = Grade("answer")
    said = normalize(trial.answer)
    for fact in expect.answer:
        spellings = [fact] if isinstance(fact, str) else fact
        if not any(normalize(s) in said for s in spellings):
            shown = spellings[0] if len(spellings) == 1 else " | ".join(spellings)
            grade.failures.append(f"the answer does not say {shown!r}")
    return grade
