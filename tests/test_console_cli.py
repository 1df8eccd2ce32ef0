"""``closeguard console`` and the console of ``closeguard run``: where it listens, the token
it prints (or does not), and the refusal to listen beyond loopback without a chosen token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.cli.console import TOKEN_ENV, open_console
from closeguard.console import check_listen
from closeguard.store import Store
from closeguard.tools.errors import ConfigError

runner = CliRunner()


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSEGUARD_MODEL", raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.chdir(tmp_path)


def test_run_prints_the_console_address_and_a_generated_token() -> None:
    result = runner.invoke(app, ["run", "--duration", "0.5", "-w", "new-lead-triage", "--plain"])
    assert result.exit_code == 0, result.output
    assert "console: http://127.0.0.1:" in result.output
    assert "/approvals (login token " in result.output


def test_a_chosen_token_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "chosen-secret-token-value")
    result = runner.invoke(app, ["run", "--duration", "0.5", "-w", "new-lead-triage", "--plain"])
    assert result.exit_code == 0, result.output
    assert f"(token from {TOKEN_ENV})" in result.output
    assert "chosen-secret-token-value" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["console", "--listen", "0.0.0.0:8788"],
        ["run", "--duration", "0.5", "-w", "new-lead-triage", "--console", "0.0.0.0:0"],
    ],
)
def test_no_listening_beyond_loopback_without_a_chosen_token(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "will not listen on 0.0.0.0" in result.output and TOKEN_ENV in result.output


def test_loopback_addresses_need_no_chosen_token() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_listen(host, False)
    check_listen("0.0.0.0", True)
    with pytest.raises(ConfigError):
        check_listen("192.168.1.5", False)


def test_console_alone_refuses_a_store_that_does_not_exist() -> None:
    result = runner.invoke(app, ["console"])
    assert result.exit_code == 1 and "store" in result.output.lower()


async def test_the_served_console_answers_on_its_port(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'served.db'}")
    said: list[str] = []
    async with (
        open_console(store, "127.0.0.1", 0, reader=None, workflows={}, say=said.append) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        login = await client.get("/login")
        assert login.status_code == 200 and "Log in" in login.text
        assert (await client.get("/static/console.js")).status_code == 200
        assert (await client.get("/approvals")).status_code == 303
    assert len(said) == 1 and said[0].startswith(f"console: {url}/approvals (login token ")


def test_a_part_of_a_scaled_out_runtime_serves_no_console_unless_asked() -> None:
    worker = runner.invoke(app, ["run", "--duration", "0.5", "--role", "worker", "--plain"])
    assert worker.exit_code == 0, worker.output
    assert "console:" not in worker.output
    asked = ["run", "--duration", "0.5", "--role", "worker", "--console", "127.0.0.1:0"]
    served = runner.invoke(app, asked)
    assert served.exit_code == 0 and "console: http://127.0.0.1:" in served.output
