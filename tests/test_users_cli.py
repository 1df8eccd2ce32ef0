"""``closeguard users``: add prints the token once as the last line; list never shows a
token or hash; disable and rotate refuse the old token; bad input is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Accounts
from closeguard.store import Store

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", url)
    return url


def _token(output: str) -> str:
    last = output.rstrip("\n").splitlines()[-1]
    assert last.startswith("token: ")
    return last.removeprefix("token: ")


def test_add_prints_the_token_last_and_it_authenticates(url: str) -> None:
    result = runner.invoke(
        app,
        [
            "users", "add", "maria", "--role", "sales-manager", "--role", "admin",
            "--email", "maria@example.com", "--notify", "json://127.0.0.1:9/hook",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    token = _token(result.stdout)
    store = Store(url)
    found = Accounts(store).authenticate(token)
    assert found is not None and found.name == "maria"
    assert found.roles == ("sales-manager", "admin")
    assert found.notify == ("json://127.0.0.1:9/hook",)


def test_list_json_gives_name_roles_email_disabled_and_never_a_secret(url: str) -> None:
    added = runner.invoke(app, ["users", "add", "omar", "--role", "rep"])
    token = _token(added.stdout)
    runner.invoke(app, ["users", "add", "maria", "--role", "admin", "--email", "M@x.org"])
    assert runner.invoke(app, ["users", "disable", "omar"]).exit_code == 0
    result = runner.invoke(app, ["users", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"name": "maria", "roles": ["admin"], "email": "m@x.org", "disabled": False},
        {"name": "omar", "roles": ["rep"], "email": None, "disabled": True},
    ]
    table = runner.invoke(app, ["users", "list"])
    assert "omar" in table.stdout and "disabled" in table.stdout
    for shown in (result.stdout, table.stdout):
        assert token not in shown and "scrypt" not in shown and "cg_" not in shown


def test_rotate_prints_a_new_token_last_and_the_old_one_stops(url: str) -> None:
    old = _token(runner.invoke(app, ["users", "add", "omar", "--role", "rep"]).stdout)
    result = runner.invoke(app, ["users", "rotate", "omar"])
    assert result.exit_code == 0, result.output
    new = _token(result.stdout)
    accounts = Accounts(Store(url))
    assert accounts.authenticate(old) is None
    assert accounts.authenticate(new) is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["users", "add", "omar"], "Missing option '--role'"),
        (["users", "add", "om ar", "--role", "rep"], "not an account name"),
        (["users", "add", "omar", "--role", "Rep!"], "not a role name"),
        (["users", "add", "omar", "--role", "rep", "--email", "x"], "not an email"),
        (["users", "disable", "nobody"], "no account named 'nobody'"),
        (["users", "rotate", "nobody"], "no account named 'nobody'"),
    ],
)
def test_bad_input_is_one_error_line(url: str, args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and says in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_second_account_with_the_same_name_is_refused(url: str) -> None:
    assert runner.invoke(app, ["users", "add", "omar", "--role", "rep"]).exit_code == 0
    result = runner.invoke(app, ["users", "add", "omar", "--role", "admin"])
    assert result.exit_code == 1 and "exists already" in result.stderr
