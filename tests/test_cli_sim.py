"""``closeguard sim``: a busy port is one line and exit 1; a served simulator answers its key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from closeguard.cli import app

runner = CliRunner()
CLOSEGUARD = [sys.executable, "-c", "from closeguard.cli import main; main()"]


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_serve_on_a_busy_port_is_one_line_and_exit_1(busy_port: int) -> None:
    result = runner.invoke(app, ["sim", "serve", "--port", str(busy_port), "--leads", "3"])
    assert result.exit_code == 1
    assert result.stdout == ""  # no "Close simulator at ..." banner before the failure
    assert result.stderr == (
        f"error: cannot serve on 127.0.0.1:{busy_port}: Address already in use\n"
    )


def test_serve_help_says_which_key_it_accepts() -> None:
    text = " ".join(runner.invoke(app, ["sim", "serve", "--help"]).stdout.replace("│", "").split())
    assert "only the world's own key is accepted: it is printed at start" in text


def test_seed_writes_a_world_with_o(tmp_path: Path) -> None:
    out = tmp_path / "world.json"
    result = runner.invoke(app, ["sim", "seed", "-o", str(out), "--leads", "3"])
    assert result.exit_code == 0 and result.stdout.startswith(f"wrote {out}: seed 1, 3 leads")
    assert json.loads(out.read_text())["format"]


def _banner(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert all(lines), f"no banner; stderr: {proc.stderr.read() if proc.stderr else ''}"
    return [line.strip() for line in lines]


def test_served_simulator_answers_the_printed_key_on_any_free_port() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLOSEGUARD, "sim", "serve", "--port", "0", "--leads", "3", "--rate-limit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        at, key_line, _ = _banner(proc)
        base = at.removeprefix("Close simulator at ")
        assert not base.endswith(":0/api/v1")
        key = key_line.removeprefix("API key: ")
        deadline = time.monotonic() + 20
        while True:
            try:
                me = httpx.get(f"{base}/me/", auth=(key, ""), timeout=5)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the served simulator never answered"
        assert me.status_code == 200 and me.json()["id"].startswith("user_")
        assert httpx.get(f"{base}/me/", auth=("wrong", ""), timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
