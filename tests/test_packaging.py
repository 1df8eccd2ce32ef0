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


def test_no_unused_dependency() -> None:
    """starlette was declared but imported nowhere; dependencies must be used."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if d.startswith("starlette")]
