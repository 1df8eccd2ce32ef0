"""One CLI: the same flag for the same meaning, JSON arrays, one-line errors, tidy help."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.cli._app import load
from closeguard.guardrails import Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools.catalog import classify

runner = CliRunner()


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under ``command``; the root's load on first use, so they are loaded."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub if path else load(name), (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS]
)
def test_help_has_no_type_tags_or_rst_backticks(path: tuple[str, ...], command: Any) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0
    text = result.stdout
    assert not re.search(r"<(bool|str|int|float|path|int range|float range)>", text), text
    assert "`" not in text and not re.search(r"Usage:.*[{}]", text), text


def test_one_flag_per_meaning() -> None:
    by_name: dict[str, set[tuple[str, ...]]] = {}
    for _, command in COMMANDS:
        for param in getattr(command, "params", []):
            if param.param_type_name == "option":
                by_name.setdefault(param.name, set()).add(tuple(sorted(param.opts)))
    assert by_name["limit"] == {("--limit", "-n")}
    assert by_name["out"] == {("--out", "-o")}
    assert by_name["as_json"] == {("--json",)}
    assert "lines" not in by_name


@pytest.fixture
def filled(store: Store) -> Store:
    log = AuditLog(store)
    log.append({"method": "GET", "path": "/lead/", "decision": "allow", "args": {}}, flush=True)
    Approvals(store).request(
        classify("DELETE", "/lead/lead_1/"), method="DELETE", path="/lead/lead_1/"
    )
    return store


@pytest.mark.parametrize(
    "args",
    [
        ["catalog"],
        ["policy", "list"],
        ["policy", "explain", "read-only"],
        ["approvals", "list"],
        ["approvals", "list", "--all"],
        ["audit", "tail"],
    ],
    ids=" ".join,
)
def test_every_listing_prints_a_json_array(args: list[str], filled: Store) -> None:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list) and data and all(isinstance(row, dict) for row in data)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["audit", "tail", "-n", "-1"], 2, "Invalid value for '-n' / '--limit'"),
        (["audit", "tail", "-n", "0", "--json"], 2, "Invalid value for '-n' / '--limit'"),
        (["approvals", "list", "--json", "--status", "nope"], 2, "--status must be one of"),
        (["approvals", "show", "appr_nope", "--json"], 1, "no approval 'appr_nope'"),
        (["audit", "show", "99", "--json"], 1, "no audit row 99"),
        (["approvals", "approve", "appr_nope"], 2, "Missing option '--as'"),
        (["approvals", "reject", "appr_nope", "--as", "nobody"], 1, "no account named 'nobody'"),
        (["catalog", "-r", "nope", "--json"], 1, "no endpoints on resource 'nope'"),
        (["policy", "check", "no-such.yaml"], 1, "policy file 'no-such.yaml' not found"),
        (["nope"], 2, "No such command 'nope'"),
    ],
)
def test_errors_are_one_line_on_stderr(
    args: list[str], code: int, says: str, filled: Store
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and says in result.stderr
    assert result.stderr.count("\n") == 1


def test_status_is_case_insensitive(filled: Store) -> None:
    result = runner.invoke(app, ["approvals", "list", "--status", "PENDING", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 1


def test_empty_listings_say_so(store: Store) -> None:
    assert runner.invoke(app, ["approvals", "list"]).stdout == "no pending approvals\n"
    assert runner.invoke(app, ["approvals", "list", "--all"]).stdout == "no approvals\n"
    assert runner.invoke(app, ["audit", "tail"]).stdout.startswith("no audit rows yet")
    assert runner.invoke(app, ["audit", "tail", "--json"]).stdout == "[]\n"


def test_no_python_none_in_tables(filled: Store) -> None:
    approval = Approvals(filled).list()[0]
    outputs = [
        runner.invoke(app, ["approvals", "show", approval.id]).stdout,
        runner.invoke(app, ["approvals", "list"]).stdout,
        runner.invoke(app, ["audit", "show", "1"]).stdout,
        runner.invoke(app, ["audit", "tail"]).stdout,
        runner.invoke(app, ["policy", "explain", "read-only"]).stdout,
    ]
    for text in outputs:
        assert text and not re.search(r"\bNone\b", text), text


def test_errors_are_red_on_a_terminal_and_plain_when_piped(store: Store) -> None:
    colored = runner.invoke(app, ["approvals", "show", "appr_nope", "--json"], color=True)
    assert colored.stderr.startswith("\x1b[31m\x1b[1merror:\x1b[0m no approval")
    plain = runner.invoke(app, ["approvals", "show", "appr_nope", "--json"])
    assert plain.stderr == "error: no approval 'appr_nope'\n"
