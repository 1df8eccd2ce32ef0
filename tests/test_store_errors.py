"""A store that cannot be opened, or does not exist, is one clear error; reading creates nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from closeguard.cli import app, main
from closeguard.guardrails import Accounts, Approvals, AuditLog
from closeguard.store import Store, store_problem
from closeguard.tools.catalog import classify
from closeguard.tools.errors import StoreError

runner = CliRunner()
PG_URL = os.environ.get("CLOSEGUARD_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
READ_ONLY = [
    ["audit", "tail"],
    ["audit", "show", "1"],
    ["audit", "verify"],
    ["audit", "head"],
    ["audit", "export"],
    ["approvals", "list"],
    ["approvals", "show", "appr_x"],
    ["approvals", "approve", "appr_x", "--as", "ana"],
    ["approvals", "reject", "appr_x", "--as", "ana"],
]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("foo://x", "Can't load plugin"),
        ("postgresql+psycopg://bob:hunter2@127.0.0.1:1/nope", "Connection refused"),
        ("not a url at all", "store at"),
    ],
)
def test_unopenable_store_raises_store_error_without_password(url: str, says: str) -> None:
    with pytest.raises(StoreError) as err:
        Store(url)
    assert says in str(err.value)
    assert "hunter2" not in str(err.value)


def test_cli_prints_one_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/x")
    monkeypatch.setattr("sys.argv", ["closeguard", "audit", "tail"])
    with pytest.raises(SystemExit) as code:
        main()
    assert code.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot open the store") and err.count("\n") == 1
    assert "hunter2" not in err and "Traceback" not in err


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_reading_a_missing_sqlite_store_refuses_and_creates_nothing(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "no" / "such" / "dir" / "x.db"
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{db}")
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no closeguard store at sqlite:///{db} (CLOSEGUARD_STORE_URL): "
        "the file does not exist; guarded calls create it\n"
    )
    assert not (tmp_path / "no").exists()


def test_create_false_opens_an_existing_store_and_refuses_a_foreign_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(StoreError, match="the file does not exist"):
        Store(url, create=False)
    assert store_problem(url) == "the file does not exist"
    Store(url).dispose()
    assert store_problem(url) is None
    opened = Store(url, create=False)
    assert AuditLog(opened).verify().ok
    opened.dispose()

    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreError, match="has no closeguard tables"):
        Store(f"sqlite:///{empty}", create=False)
    assert store_problem("sqlite://") == "an in-memory database starts empty"
    assert store_problem("postgresql://bob:pw@127.0.0.1:1/x").startswith("cannot be opened")


def test_reading_commands_work_on_an_existing_store(store: Store) -> None:
    approval = Approvals(store).request(
        classify("DELETE", "/lead/lead_1/"), method="DELETE", path="/lead/lead_1/", actor="bot"
    )
    assert runner.invoke(app, ["audit", "verify"]).stdout.startswith("ok: 0 rows")
    Accounts(store).add("ana", roles=["admin"])
    assert runner.invoke(app, ["approvals", "approve", approval.id, "--as", "ana"]).exit_code == 0


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); its URL has a password."""
    name = f"cg_d2_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {exc}")
    base = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql://postgres:hunter2@")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_reading_an_empty_postgres_database_creates_no_tables(
    empty_pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", empty_pg_database)
    for args in (
        ["audit", "verify"],
        ["approvals", "list"],
        ["approvals", "approve", "appr_x", "--as", "ana"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert "the database has no closeguard tables" in result.stderr
        assert "postgres:***@" in result.stderr and "hunter2" not in result.stderr
    engine = create_engine(empty_pg_database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
