"""The layout of docs/architecture.md, enforced on the source.

- Packages import only what the table "Layers and the direction of imports" says they may
  (read from the doc itself, so code, table and text cannot drift apart), or what those
  import in turn; nothing imports ``cli``.
- Inside a package, modules import one another one way: no cycles.
- No closeguard import hides in a function body (that is how cycles used to hide), except
  in ``cli``: its command modules import what a command needs inside the command, so each
  command starts with only what it uses (issue 23), and nothing imports ``cli``, so such an
  import cannot hide a cycle with another package (cycles inside ``cli`` are still found).

Every spelling counts: ``import closeguard.x``, ``from closeguard.x import y``,
``from closeguard import x`` and relative imports (``from . import x``, ``from .x import y``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "closeguard"
DOC = REPO / "docs" / "architecture.md"
ROOT = "closeguard"


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def package_of(module: str) -> str:
    """``closeguard.tools.client`` -> ``tools``; the root package itself -> ``closeguard``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_init: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = source.split(".") if is_init else source.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    # ``from package import submodule`` imports the submodule; anything else the module.
    found = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in modules()]
    return found if len(found) == len(node.names) else [*found, prefix]


def imports_of(path: Path) -> list[Import]:
    source = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    out: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(child, source, path.name == "__init__.py"):
                    if target == ROOT or target.startswith(ROOT + "."):
                        out.append(Import(source, target, child.lineno, in_function))
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, inside)

    visit(tree, False)
    return out


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(i for path in modules().values() for i in imports_of(path))


# -- the table of docs/architecture.md --------------------------------------------------


@cache
def documented_layers() -> dict[str, dict[str, frozenset[str] | None]]:
    """Package -> {package it may import -> the only modules allowed, or None for any}."""
    text = DOC.read_text()
    section = text.split("## Layers and the direction of imports", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if re.match(r"\|\s*`\w+`\s*\|", ln)]
    names = [re.match(r"\|\s*`(\w+)`", row).group(1) for row in rows]  # type: ignore[union-attr]
    layers: dict[str, dict[str, frozenset[str] | None]] = {}
    for name, row in zip(names, rows, strict=True):
        cell = row.strip().strip("|").split("|")[-1]
        if cell.strip().startswith("everything"):
            layers[name] = {other: None for other in names if other != name}
            continue
        allowed: dict[str, frozenset[str] | None] = {}
        for dep, only in re.findall(r"`(\w+)`(?:\s*\(([^)]*?)\s+only\))?", cell):
            allowed[dep] = frozenset(re.findall(r"\w+", only)) - {"and"} if only else None
        layers[name] = allowed
    return layers


def reachable(package: str) -> set[str]:
    """What ``package`` may import: its row, and what those rows allow, transitively."""
    layers = documented_layers()
    seen: set[str] = set()
    todo = list(layers[package])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(layers.get(dep, {}))
    return seen


def test_the_table_is_read_and_matches_the_packages() -> None:
    layers = documented_layers()
    assert layers["telemetry"] == {}
    assert layers["tools"] == {"telemetry": None}
    assert layers["store"] == {"tools": frozenset({"settings", "errors"})}
    assert layers["simulator"] == {"tools": None}
    assert "cli" not in {dep for deps in layers.values() for dep in deps}
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(layers), f"undocumented packages: {packages - set(layers)}"


def test_packages_import_only_documented_layers() -> None:
    layers = documented_layers()
    root_needs = {package_of(i.target) for i in imports_of(PKG / "__init__.py")}
    wrong = []
    for imp in all_imports():
        src, dst = package_of(imp.source), package_of(imp.target)
        if src in (ROOT, dst):
            continue
        needs = root_needs if dst == ROOT else {dst}
        if not needs <= reachable(src) or (src in needs):
            wrong.append(imp.where)
            continue
        only = layers[src].get(dst)
        module = imp.target.split(".")[2:3]
        if only is not None and (not module or module[0] not in only):
            wrong.append(f"{imp.where} (only {', '.join(sorted(only))} of {dst} allowed)")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_cli() -> None:
    wrong = [
        i.where
        for i in all_imports()
        if package_of(i.target) == "cli" and package_of(i.source) != "cli"
    ]
    assert not wrong, "\n".join(wrong)


DEFERRED = {
    ("closeguard.tools.catalog", "closeguard.tools.models"),
    ("closeguard.guardrails.policy", "closeguard.tools.models"),
    ("closeguard.workflows.library.overdue_task_digest", "closeguard.tools.models"),
    ("closeguard.workflows.rules.parse", "closeguard.workflows.cron"),
    ("closeguard.guardrails.accounts", "closeguard.store.users"),
    ("closeguard.guardrails.approvals", "closeguard.store.approvals"),
    ("closeguard.guardrails.audit", "closeguard.store.audit"),
    ("closeguard.guardrails.quotas", "closeguard.store.quotas"),
    ("closeguard.guardrails.replay", "closeguard.store"),
    ("closeguard.guardrails.replay", "closeguard.store.audit"),
}
"""The imports outside ``cli`` allowed inside a function, each for a reason
docs/architecture.md gives ("A fast command line"): the catalog's pydantic models load on
first use, so that classifying a call, loading a policy (field names and plain types come
from ``tools.fields``) and listing the workflows import no pydantic; a user's rule file has
its crontab lines checked with APScheduler, which the packaged rules do not import; the
guard's accounts, approvals, audit log and quotas build their SQLAlchemy storage only when
given a ``Store`` (a replay only for a policy with per-window limits), so the command line's
decisions and replays on a SQLite file (``store.writer``, ``store.reader``) import none."""


def test_no_closeguard_import_inside_a_function() -> None:
    wrong = [
        i.where
        for i in all_imports()
        if i.in_function and package_of(i.source) != "cli" and (i.source, i.target) not in DEFERRED
    ]
    assert not wrong, "move these to the top of the module:\n" + "\n".join(wrong)
    deferred = {(i.source, i.target) for i in all_imports() if i.in_function}
    assert deferred >= DEFERRED, f"no longer deferred: {DEFERRED - deferred}"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


@pytest.mark.parametrize("package", sorted({package_of(m) for m in modules()} - {ROOT}), ids=str)
def test_no_import_cycle_between_modules_of_a_package(package: str) -> None:
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        if package_of(imp.source) == package == package_of(imp.target):
            edges.setdefault(imp.source, set()).add(imp.target)
    assert not cycles(edges), f"import cycles in {package}: {cycles(edges)}"


def test_the_checks_see_every_spelling() -> None:
    """Relative imports, ``from closeguard import x`` and function-level imports resolve."""
    module = PKG / "guardrails" / "policy.py"
    tree = ast.parse(
        "from . import decision\n"
        "from .transport import Guarded\n"
        "from .. import cli\n"
        "from closeguard import simulator\n"
        "def f():\n    import closeguard.guardrails.transport\n"
    )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found += _targets(node, module_name(module), False)
    assert found == [
        "closeguard.guardrails.decision",
        "closeguard.guardrails.transport",
        "closeguard.cli",
        "closeguard.simulator",
        "closeguard.guardrails.transport",
    ]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
