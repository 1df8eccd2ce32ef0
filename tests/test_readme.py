"""The README runs as written: every ``python`` block, and every ``closeguard`` line of the tour.

The blocks run in README order with one environment, as a reader would run them: a temp
store and data directory, no Close key, a temp working directory (no ``.env``; ``examples/``
linked in, as in a clone), and the ``export`` lines applied when the tour reaches them.
Lines that need what a test cannot have are skipped: a real model (``--model`` other than
``scripted:``) or a person at an interactive ``chat`` prompt. ``sim serve`` is started for
real (on a free port instead of 8765) and the placeholders ``KEY`` and ``ID`` become the key
it printed and the approval id the guarded-calls program printed. Nothing reaches the
network: the only servers are on 127.0.0.1 and any other HTTP request goes to a dead proxy.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeguard.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
SAVE_AS = re.compile(r"as `([\w.-]+\.ya?ml)`:\s*$")
CLOSEGUARD = [sys.executable, "-c", "from closeguard.cli import main; main()"]
CLEARED = (
    "CLOSE_API_KEY",
    "CLOSE_BASE_URL",
    "CLOSE_OAUTH_ACCESS_TOKEN",
    "CLOSE_OAUTH_REFRESH_TOKEN",
    "CLOSEGUARD_MODEL",
)


@dataclass
class Block:
    lang: str
    body: str
    before: str  # the README text just before the block


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        out.append(Block(m.group(1), m.group(2), text[: m.start()].rstrip().splitlines()[-1]))
    return out


@dataclass
class Tour:
    """What the tour has produced so far: placeholders to fill in, servers to stop."""

    values: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def fill(self, text: str) -> str:
        for placeholder, value in self.values.items():
            text = re.sub(rf"\b{placeholder}\b", value, text)
        return text


def offline(args: list[str]) -> bool:
    """Whether a ``closeguard`` command line can run here: no real model, no live prompt."""
    flag = next((f for f in ("--model", "-m") if f in args), None)
    model = args[args.index(flag) + 1] if flag else "scripted:"
    interactive = args[0] == "chat" and not {"--once", "--threads"} & set(args)
    offline_model = model.startswith("scripted:") or (
        args[0] == "eval" and model in {"reference", "noop", "adversary"}
    )
    return offline_model and not interactive


@pytest.fixture
def tour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tour]:
    monkeypatch.chdir(tmp_path)
    if (README.parent / "examples").is_dir():
        (tmp_path / "examples").symlink_to(README.parent / "examples")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # a dead end for anything not local
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = Tour()
    yield state
    for proc in state.servers:
        proc.terminate()
        proc.wait(timeout=20)


def run_python(code: str, tour: Tour) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, f"README snippet failed:\n{code}\n{done.stderr}"
    found = re.search(r"\bappr_\w+", done.stdout)
    if found:
        tour.values["ID"] = found.group(0)


def serve(args: list[str], tour: Tour, monkeypatch: pytest.MonkeyPatch) -> None:
    port_at = args.index("--port") + 1
    readme_port, args[port_at] = args[port_at], "0"
    proc = subprocess.Popen(
        [*CLOSEGUARD, *args[1:]],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    tour.servers.append(proc)
    assert proc.stdout is not None
    banner = [proc.stdout.readline().strip() for _ in range(3)]
    url = banner[0].removeprefix("Close simulator at ")
    tour.values[readme_port] = url.rsplit(":", 1)[1].split("/")[0]
    tour.values["KEY"] = banner[1].removeprefix("API key: ")


def run_shell(body: str, tour: Tour, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    for raw in body.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, tour.fill(value))
        elif line.startswith("closeguard sim serve"):
            serve(shlex.split(line), tour, monkeypatch)
        elif line.startswith("closeguard ") and offline(shlex.split(line)[1:]):
            args = shlex.split(tour.fill(line))[1:]
            result = runner.invoke(app, args)
            assert result.exit_code == 0, f"{line}: {result.output}"
            tour.commands.append(line)


def test_every_python_block_is_a_complete_program() -> None:
    code = [b.body for b in blocks() if b.lang == "python"]
    assert len(code) >= 2
    for body in code:
        compile(body, "README.md", "exec")  # top-level await/async with would not compile
        assert "asyncio.run(main())" in body


def test_the_readme_runs_as_written(tour: Tour, monkeypatch: pytest.MonkeyPatch) -> None:
    ran_python = 0
    for block in blocks():
        if block.lang == "yaml":
            saved = SAVE_AS.search(block.before)
            if saved:
                Path(saved.group(1)).write_text(block.body, encoding="utf-8")
        elif block.lang == "python":
            run_python(block.body, tour)
            ran_python += 1
        elif block.lang == "sh":
            run_shell(block.body, tour, monkeypatch)
    assert ran_python >= 2 and "ID" in tour.values and "KEY" in tour.values
    assert len(tour.commands) >= 15, tour.commands
    for needed in (
        "closeguard approvals approve ID",
        "closeguard audit verify",
        "closeguard policy check my-agent.yaml",
        "closeguard info",
    ):
        assert any(c.startswith(needed) for c in tour.commands), needed


def test_layout_says_why_the_parts_are_subpackages() -> None:
    layout = README.read_text(encoding="utf-8").split("## Layout", 1)[1]
    sentence = " ".join(layout.split())
    assert "subpackages of `closeguard` rather than top-level packages" in sentence
    assert "must not claim generic import names" in sentence and "`guardrails`" in sentence
