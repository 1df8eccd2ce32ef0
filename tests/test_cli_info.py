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


def test_a_sqlite_file_that_is_not_a_store_is_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard-library look says "exists" only for a file with closeguard's ``audit``
    table; any other SQLite file gets the store's own verdict."""
    import sqlite3
    from contextlib import closing

    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (x)")
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{other}")
    data = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert data["store"] == {
        "url": f"sqlite:///{other}",
        "exists": False,
        "state": "the database has no closeguard tables",
    }
    Store(f"sqlite:///{tmp_path / 'real.db'}").dispose()
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", "sqlite:///real.db")
    data = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert data["store"] == {"url": "sqlite:///real.db", "exists": True, "state": "exists"}


def test_a_percent_escaped_path_is_read_as_sqlalchemy_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(f"sqlite:///{tmp_path / 'my store.db'}").dispose()
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", "sqlite:///my%20store.db")
    data = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert data["store"]["exists"] is True


def test_every_store_has_the_table_info_looks_for() -> None:
    from closeguard.store import Tables

    assert "audit" in {t.name for t in Tables().metadata.sorted_tables}
