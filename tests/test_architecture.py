"""Imports flow one way (docs/architecture.md): each package imports only the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "closeguard"

ALLOWED: dict[str, set[str]] = {
    "tools": set(),
    "store": {"tools"},
    "guardrails": {"tools", "store"},
    "simulator": {"tools"},
    "agent": {"tools", "guardrails"},
    "workflows": {"tools", "guardrails", "agent", "store"},
    "evals": {"tools", "simulator", "agent", "workflows", "guardrails", "store"},
    "cli": {"tools", "store", "guardrails", "simulator", "agent", "workflows", "evals"},
}


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "closeguard" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_layers_below(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        used = _imported_packages(path) - {package}
        extra = used - ALLOWED[package] - {"__init__"}
        assert not extra, f"{path.relative_to(ROOT)} imports closeguard.{sorted(extra)}"


def test_nothing_imports_cli() -> None:
    for path in ROOT.rglob("*.py"):
        if "cli" in path.relative_to(ROOT).parts:
            continue
        assert "cli" not in _imported_packages(path), path
