"""The wheel users install: typed (PEP 561) and carrying its data files."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_py_typed_and_policies(tmp_path: Path) -> None:
    (wheel,) = WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "closeguard/py.typed" in names
    assert "closeguard/guardrails/policies/read-only.yaml" in names
    for part in ("templates/approvals.html", "static/console.js", "static/console.css"):
        assert f"closeguard/console/{part}" in names


def test_no_unused_dependency() -> None:
    """starlette was once declared but imported nowhere; the web console's dependencies
    (starlette, and jinja2 for its templates) must be imported by the package."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    code = "\n".join(p.read_text() for p in (ROOT / "closeguard").rglob("*.py"))
    for name, module in (("starlette", "starlette"), ("jinja2", "starlette.templating")):
        if any(d.startswith(name) for d in deps):
            assert f"from {module}" in code or f"import {module}" in code, name
