"""Finding workflows: the packaged library, and a user's own module file or folder.

A folder may also hold rules (``*.yaml`` / ``*.yml``, see ``closeguard.workflows.rules``);
a YAML file there that is a policy (``grants:`` or ``extends:``, and no ``steps:``) is
left for the workflows that name it.

A user's module defines ``WORKFLOW`` (one ``Workflow``) or ``WORKFLOWS`` (a list, tuple
or name -> workflow mapping). A folder is every ``*.py`` in it, in name order, except
files starting with ``_`` (helpers the modules may import: the folder is on ``sys.path``
while they load). A relative policy file path in a workflow is read next to its module.

Whatever is wrong with a user's file, the error is one ``ConfigError`` line naming the
file and line (a syntax error, an exception while importing, a missing or mistyped
``WORKFLOW``, a step that is not an async function, a policy that does not load, a
name used twice), never a traceback.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from closeguard.guardrails import Policy
from closeguard.tools.errors import ConfigError
from closeguard.workflows.definition import EventTrigger, ManualTrigger, ScheduleTrigger, Workflow
from closeguard.workflows.library import WORKFLOWS
from closeguard.workflows.rules import rule_workflows

__all__ = ["load_workflows", "packaged_workflows"]

_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_PACKAGE = Path(__file__).resolve().parents[1]


RULES = _PACKAGE / "workflows" / "library" / "rules"
"""The packaged workflows written as rules (one YAML file each)."""
RULE_SUFFIXES = (".yaml", ".yml")


def packaged_workflows() -> dict[str, Workflow]:
    """The shipped sales-ops workflows by name (Python modules, then rules)."""
    found: dict[str, Workflow] = {workflow.name: workflow for workflow in WORKFLOWS}
    for workflow in _packaged_rules():
        found[workflow.name] = workflow
    return found


@functools.cache
def _packaged_rules() -> tuple[Workflow, ...]:
    """The packaged rules, loaded once per process (reading and deriving them takes a few
    hundred milliseconds; a workflow is immutable, like the Python modules' ones)."""
    files = sorted(RULES.glob("*.yaml"))
    return tuple(w for file in files for w, _ in rule_workflows(file, packaged=True))


def load_workflows(path: str | Path) -> dict[str, Workflow]:
    """The workflows a module or rule file, or a folder of them, defines, by name."""
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(
            p
            for p in root.iterdir()
            if p.is_file()
            and not p.name.startswith(("_", "."))
            and (p.suffix == ".py" or (p.suffix in RULE_SUFFIXES and _is_rule_file(p)))
        )
        if not files:
            raise ConfigError(
                "no workflow modules (*.py) or rules (*.yaml) in this folder", file=str(root)
            )
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError("workflow module or folder not found", file=str(root))
    found: dict[str, Workflow] = {}
    where: dict[str, str] = {}
    for file in files:
        loaded = rule_workflows(file) if file.suffix in RULE_SUFFIXES else _workflows_in(file)
        for workflow, line in loaded:
            if workflow.name in found:
                raise ConfigError(
                    f"workflow name {workflow.name!r} is already used in {where[workflow.name]}",
                    file=str(file),
                    line=line,
                )
            found[workflow.name] = workflow
            where[workflow.name] = str(file)
    return found


def _is_rule_file(file: Path) -> bool:
    """Whether a YAML file in a workflow folder is a rule file, not a policy beside them."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # the rule loader names the problem
    top = {m.group(1) for m in _TOP_KEY.finditer(text)}
    return not (top & {"grants", "extends"} and "steps" not in top)


_TOP_KEY = re.compile(r"^([A-Za-z_]+)\s*:", re.MULTILINE)


def _workflows_in(file: Path) -> list[tuple[Workflow, int | None]]:
    module = _import(file)
    exported = {n: getattr(module, n) for n in ("WORKFLOW", "WORKFLOWS") if hasattr(module, n)}
    if not exported:
        raise ConfigError("defines neither WORKFLOW nor WORKFLOWS", file=str(file))
    out = []
    for name, value in exported.items():
        line = _assigned_at(file, name)
        items: list[Any]
        if name == "WORKFLOW":
            items = [value]
        elif isinstance(value, Mapping):
            items = list(value.values())
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise ConfigError(
                f"WORKFLOWS must be a list, tuple or mapping of Workflow, not {_kind(value)}",
                file=str(file),
                line=line,
            )
        for item in items:
            out.append((_checked(item, name, file, line), line))
    return out


def _checked(value: Any, name: str, file: Path, line: int | None) -> Workflow:
    def bad(message: str) -> ConfigError:
        return ConfigError(message, file=str(file), line=line)

    if not isinstance(value, Workflow):
        raise bad(f"{name} must be a closeguard Workflow, not {_kind(value)}")
    if not _NAME_OK.match(value.name):
        raise bad(f"workflow name {value.name!r}: use lowercase letters, digits, '-', '_' or '.'")
    if not isinstance(value.trigger, EventTrigger | ScheduleTrigger | ManualTrigger):
        raise bad(
            f"workflow {value.name!r}: trigger must be an EventTrigger, ScheduleTrigger "
            f"or ManualTrigger, not {_kind(value.trigger)}"
        )
    if not value.steps:
        raise bad(f"workflow {value.name!r} has no steps")
    for step in value.steps:
        if not inspect.iscoroutinefunction(step):
            raise bad(
                f"workflow {value.name!r}: step {getattr(step, '__name__', step)!r} must be an "
                "async function taking the context (async def step(ctx): ...)"
            )
    return _with_policy(value, file, line)


def _with_policy(workflow: Workflow, file: Path, line: int | None) -> Workflow:
    """The workflow with its policy loaded (a relative policy path read beside ``file``)."""
    if isinstance(workflow.policy, Policy):
        return workflow
    source: str | Path = workflow.policy
    beside = file.parent / workflow.policy
    if not Path(workflow.policy).is_absolute() and beside.is_file():
        source = beside
    try:
        policy = Policy.load(source)
    except ConfigError as exc:
        if exc.file is not None:
            raise
        raise ConfigError(
            f"workflow {workflow.name!r}: {exc.reason}", file=str(file), line=line
        ) from None
    return dataclasses.replace(workflow, policy=policy)


def _import(file: Path) -> ModuleType:
    digest = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", file.stem)
    name = f"closeguard_user_workflows.{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError("cannot be imported as a Python module", file=str(file))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        with _on_path(file.parent):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise ConfigError(
            f"syntax error: {exc.msg}", file=exc.filename or str(file), line=exc.lineno
        ) from None
    except Exception as exc:
        del sys.modules[name]
        at_file, at_line = _where(exc, file)
        raise ConfigError(
            f"{type(exc).__name__} while loading: {_one_line(exc)}", file=at_file, line=at_line
        ) from None
    return module


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _where(exc: BaseException, file: Path) -> tuple[str, int | None]:
    """The innermost frame of the exception in the user's code (else ``file``, no line):
    under the module's folder, and neither closeguard's own code nor an installed package."""
    folder = file.parent.resolve()
    best: tuple[str, int | None] = (str(file), None)
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if not path.is_file():
            continue
        path = path.resolve()
        ours = path.is_relative_to(_PACKAGE) or "site-packages" in path.parts
        if path.is_relative_to(folder) and not ours:
            best = (frame.filename, frame.lineno)
    return best


def _assigned_at(file: Path, name: str) -> int | None:
    """The line where the module assigns ``name`` (the last assignment), if found."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    line = None
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            line = node.lineno
    return line


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _kind(value: Any) -> str:
    return type(value).__name__
