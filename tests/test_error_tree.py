"""The error tree drawn in ``closeguard/tools/errors.py`` is the tree the classes form."""

from __future__ import annotations

import re

import httpx

import closeguard.simulator
import closeguard.tools.errors as errors
from closeguard.guardrails import ApprovalError as GuardrailsApprovalError

EXTERNAL = {"WorldFileError": closeguard.simulator.WorldFileError}


def _drawn_tree() -> list[tuple[str, str]]:
    """(child, parent) pairs read from the module docstring's drawing."""
    assert errors.__doc__
    pairs: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        match = re.match(r"^\s*((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)(?:\s|$)", line)
        if not match or not re.search(r"[├└]── |^\s*CloseguardError", line):
            continue
        depth = len(match.group(1)) // 4 + (1 if "── " in line else 0)
        name = match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            pairs.append((name, stack[-1][1]))
        stack.append((depth, name))
    return pairs


def test_drawing_matches_the_classes() -> None:
    pairs = _drawn_tree()
    assert len(pairs) >= 20
    for child, parent in pairs:
        cls = EXTERNAL.get(child) or getattr(errors, child)
        assert cls.__bases__[0] is getattr(errors, parent), f"{child} is drawn under {parent}"
    drawn = {child for child, _ in pairs} | {"CloseguardError"}
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.CloseguardError)
    }
    assert defined <= drawn, f"not drawn: {sorted(defined - drawn)}"


def test_families() -> None:
    assert issubclass(errors.PolicyViolation, errors.GuardError)
    assert issubclass(errors.ApprovalRequired, errors.GuardError)
    assert GuardrailsApprovalError is errors.ApprovalError
    assert issubclass(errors.ApprovalError, errors.GuardError)
    for usage in (errors.InvalidArguments, errors.PagingLimitExceeded, errors.UnknownEndpoint):
        assert issubclass(usage, errors.UsageError)
    assert issubclass(errors.InvalidArguments, ValueError)
    assert issubclass(closeguard.simulator.WorldFileError, errors.ConfigError)


def test_no_name_shadows_an_httpx_exception() -> None:
    ours = {n for n, v in vars(errors).items() if isinstance(v, type)}
    theirs = {n for n, v in vars(httpx).items() if isinstance(v, type) and issubclass(v, Exception)}
    assert not ours & theirs
