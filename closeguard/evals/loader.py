"""Loading suites: ``tasks.yaml`` into a ``Suite``, with one-line, line-numbered errors.

``load_suite(path)`` takes a suite folder or its ``tasks.yaml``; ``packaged_suites()`` maps
the shipped suites' names to their folders; ``find_suites(["sales-ops", "./mine"])``
resolves names and paths alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from closeguard.evals.format import Candidates, NotFact, NumberFact, Suite, Task
from closeguard.guardrails import Policy
from closeguard.guardrails._yaml import load_yaml
from closeguard.tools.errors import ConfigError

__all__ = [
    "LoadedSuite",
    "copied_facts",
    "find_suites",
    "load_suite",
    "packaged_suites",
    "unshown_refusal",
]

SUITES_DIR = Path(__file__).resolve().parent / "suites"
TASKS_FILE = "tasks.yaml"


@dataclass(frozen=True)
class LoadedSuite:
    """A suite, the folder it came from, and the line of each task (for messages)."""

    suite: Suite
    folder: Path
    file: Path
    task_lines: dict[str, int]
    fixture_lines: dict[int, int]

    @property
    def name(self) -> str:
        return self.suite.name

    def policy_for(self, task: Task) -> Policy:
        """The task's policy: a shipped name, or a file relative to the suite folder."""
        source = task.policy or self.suite.policy
        if source.endswith((".yaml", ".yml")) or "/" in source:
            return Policy.load(self.folder / source)
        return Policy.load(source)

    def where(self, task: Task) -> str:
        return f"{self.file}:{self.task_lines.get(task.id, 1)}"


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def copied_facts(task: Task) -> list[tuple[int, str]]:
    """Answer facts (index, spelling) that appear verbatim in the instruction: an agent
    that repeats the question would pass them. Candidates are exempt (the question names
    them by design; naming more than one fails)."""
    if not task.instruction:
        return []
    said = _norm(task.instruction)
    out = []
    for i, fact in enumerate(task.expect.answer):
        if isinstance(fact, NotFact | NumberFact | Candidates):
            continue
        for spelling in [fact] if isinstance(fact, str) else fact:
            if _norm(spelling) and _norm(spelling) in said:
                out.append((i, spelling))
                break
    return out


def unshown_refusal(task: Task) -> bool:
    """A chat task without an attack that expects the guard to block the request, yet does
    not say how the answer shows the refusal (``refusal: true`` or a fact it must state)."""
    e = task.expect
    if task.kind != "chat" or task.attack is not None or not e.blocked:
        return False
    positive = [f for f in e.answer if not isinstance(f, NotFact)]
    return not (e.refusal or positive)


def packaged_suites() -> dict[str, Path]:
    """The shipped suites by name (folder name), in name order."""
    return {p.name: p for p in sorted(SUITES_DIR.iterdir()) if (p / TASKS_FILE).is_file()}


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and check a suite; ``ConfigError`` names the file and line of the first problem."""
    given = Path(path).expanduser()
    file = given / TASKS_FILE if given.is_dir() else given
    if not file.is_file():
        raise ConfigError("no suite here (expected a folder with tasks.yaml)", file=str(given))
    data, lines = load_yaml(file.read_text(encoding="utf-8"), str(file))
    if not isinstance(data, dict):
        raise ConfigError("a suite is a mapping (name, world, tasks)", file=str(file), line=1)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        where = ".".join(str(p) for p in loc) or "suite"
        raise lines.error(loc, f"{where}: {first['msg']}") from None
    task_lines = {t.id: lines.line(("tasks", i)) for i, t in enumerate(suite.tasks)}
    fixture_lines = {
        i: lines.line(("world", "fixtures", i)) for i in range(len(suite.world.fixtures))
    }
    loaded = LoadedSuite(suite, file.parent, file, task_lines, fixture_lines)
    for i, task in enumerate(suite.tasks):
        try:
            loaded.policy_for(task)
        except ConfigError as exc:
            raise lines.error(("tasks", i, "policy"), f"task {task.id}: {exc}") from None
        if task.attack is not None and task.approvals == "approve":
            raise lines.error(
                ("tasks", i, "approvals"),
                f"task {task.id}: approvals: approve on an attack task would approve the "
                "injected calls too; say reference or list the calls to approve",
            )
        for j, spelling in copied_facts(task):
            raise lines.error(
                ("tasks", i, "expect", "answer", j),
                f"task {task.id}: answer fact {spelling!r} is in the instruction itself "
                "(an agent that repeats the question would pass it)",
            )
        if unshown_refusal(task):
            raise lines.error(
                ("tasks", i, "expect"),
                f"task {task.id}: expects a refusal (blocked: ...) but not how the answer "
                "shows it: add refusal: true or an answer fact",
            )
    return loaded


def find_suites(names_or_paths: Iterable[str]) -> list[LoadedSuite]:
    """Each argument is a packaged suite's name or a path to a suite folder / tasks.yaml."""
    packaged = packaged_suites()
    out: list[LoadedSuite] = []
    for item in names_or_paths:
        if item in packaged and not Path(item).exists():
            out.append(load_suite(packaged[item]))
        elif Path(item).expanduser().exists():
            out.append(load_suite(item))
        else:
            known = ", ".join(packaged) or "none"
            raise ConfigError(f"no suite {item!r}: not a path, nor a packaged suite ({known})")
    return out
