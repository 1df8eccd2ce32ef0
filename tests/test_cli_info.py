"""``closeguard info``: store, Close base URL, credential (masked) and model, no secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.store import Store
from tests._secrets import api_key

runner = CliRunner()
SECRETS = ("CLOSE_API_KEY", "CLOSE_OAUTH_ACCESS_TOKEN", "CLOSEGUARD_MODEL", "CLOSE_BASE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file of the developer's


def test_info_without_settings_says_simulator_and_store_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "none" / "x.db"
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{db}")
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["store"] == f"sqlite:///{db} (the file does not exist)"
    assert lines["close"] == "the embedded simulator"
    assert lines["credential"].startswith("none")
    assert lines["model"].startswith("none (set CLOSEGUARD_MODEL")
    assert not db.parent.exists()


def test_info_masks_the_key_and_the_store_password(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSE_API_KEY", api_key("_WXYZ"))
    monkeypatch.setenv("CLOSE_BASE_URL", "http://127.0.0.1:8765/api/v1")
    monkeypatch.setenv("CLOSEGUARD_MODEL", "openai:gpt-4o-mini")
    text = runner.invoke(app, ["info"]).stdout
    assert api_key() not in text and "API key …WXYZ (CLOSE_API_KEY)" in text
    assert "http://127.0.0.1:8765/api/v1" in text and "openai:gpt-4o-mini" in text
    assert "(exists)" in text
    data = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert data["store"]["exists"] is True and data["simulator"] is False
    assert data["credential"] == {"kind": "api_key", "shown": "API key …WXYZ (CLOSE_API_KEY)"}

    monkeypatch.setenv("CLOSEGUARD_STORE_URL", "postgresql://me:hunter2@127.0.0.1:1/x")
    text = runner.invoke(app, ["info"]).stdout
    assert "postgresql://me:***@127.0.0.1:1/x (cannot be opened:" in text
    assert "hunter2" not in text
