"""``closeguard policy`` and ``closeguard approvals`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Accounts, Approvals
from closeguard.store import Store
from closeguard.tools.catalog import ENDPOINTS, classify

runner = CliRunner()


def test_check_good_and_bad_files(tmp_path: Path) -> None:
    good = runner.invoke(app, ["policy", "check", "sales-rep"])
    assert good.exit_code == 0 and "ok: policy 'sales-rep'" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ngrants:\n  lead: write\n  opportunty: read\n")
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:4: unknown resource 'opportunty'; did you mean opportunity" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    missing = runner.invoke(app, ["policy", "check", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_explain_covers_every_endpoint() -> None:
    result = runner.invoke(app, ["policy", "explain", "sales-rep", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert isinstance(data, list)
    names = {row["endpoint"] for row in data}
    assert names == {ep.name for ep in ENDPOINTS}
    by = {(r["endpoint"], r["access"]): r for r in data}
    assert by[("lead.delete", "destructive")]["outcome"] == "deny"
    assert by[("activity.email.create", "destructive")]["escalated"] is True
    assert by[("activity.email.create", "destructive")]["outcome"] == "deny"
    assert by[("activity.email.create", "write")]["constraints"] == [
        "status: in ['draft'], required"
    ]
    assert by[("opportunity.update", "write")]["outcome"] == "approve"
    table = runner.invoke(app, ["policy", "explain", "read-only"])
    assert table.exit_code == 0 and "lead.merge" in table.output and "deny" in table.output


def test_approvals_list_show_approve_reject(store: Store) -> None:
    approvals = Approvals(store)
    first = approvals.request(
        classify("DELETE", "/lead/lead_1/"),
        method="DELETE",
        path="/lead/lead_1/",
        actor="bot",
        rule="approve[0]",
    )
    second = approvals.request(
        classify("DELETE", "/lead/lead_2/"), method="DELETE", path="/lead/lead_2/", actor="bot"
    )
    listed = runner.invoke(app, ["approvals", "list", "--json"])
    assert listed.exit_code == 0
    assert {a["id"] for a in json.loads(listed.output)} == {first.id, second.id}
    assert first.id in runner.invoke(app, ["approvals", "list"]).output

    shown = runner.invoke(app, ["approvals", "show", first.id, "--json"])
    assert json.loads(shown.output)["path"] == "/lead/lead_1/"

    Accounts(approvals.store).add("ana", roles=["admin"])
    ok = runner.invoke(app, ["approvals", "approve", first.id, "--as", "ana", "--note", "fine"])
    assert ok.exit_code == 0 and "approved" in ok.output
    got = approvals.get(first.id)
    assert got is not None and got.status == "approved" and got.decided_by == "ana"
    again = runner.invoke(app, ["approvals", "approve", first.id, "--as", "ana"])
    assert again.exit_code == 1 and "not pending" in again.output

    no = runner.invoke(app, ["approvals", "reject", second.id, "--as", "ana"])
    assert no.exit_code == 0
    pending = json.loads(runner.invoke(app, ["approvals", "list", "--json"]).output)
    assert pending == []
    every = json.loads(runner.invoke(app, ["approvals", "list", "--all", "--json"]).output)
    assert {a["status"] for a in every} == {"approved", "rejected"}
    assert runner.invoke(app, ["approvals", "show", "appr_missing"]).exit_code == 1


EMPTY_VALUES = {
    "grants-empty.yaml": ("name: x\ngrants:\n", None),
    "name-empty.yaml": ("name:\ngrants: {lead: read}\n", ":1: name must be a string"),
    "unindented.yaml": (
        "name: x\ngrants: {task: write}\nconstraints:\n  task.create:\n"
        "  lead_id: {scope: triggered}\n",
        ":4: constraints.task.create maps field -> rule",
    ),
    "syntax.yaml": ("name: x\ngrants: {lead: read\n", ":3: YAML syntax"),
}


def test_check_and_explain_print_one_line_for_a_malformed_file(tmp_path: Path) -> None:
    for file, (text, says) in EMPTY_VALUES.items():
        if says is None:
            continue
        path = tmp_path / file
        path.write_text(text)
        for command in ("check", "explain"):
            result = runner.invoke(app, ["policy", command, str(path)])
            assert result.exit_code == 1, result.output
            assert result.stdout == ""
            assert result.stderr.startswith(f"error: {path}{says}")
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_policy_that_grants_nothing_is_accepted_with_a_warning(tmp_path: Path) -> None:
    for name, text in (("empty.yaml", ""), ("grants-empty.yaml", "name: x\ngrants:\n")):
        path = tmp_path / name
        path.write_text(text)
        result = runner.invoke(app, ["policy", "check", str(path)])
        assert result.exit_code == 0
        assert result.stdout.startswith("ok: policy")
        assert "grants nothing, so it denies every call" in result.stderr
    fine = runner.invoke(app, ["policy", "check", "read-only"])
    assert fine.exit_code == 0 and fine.stderr == ""


def test_policy_list_json_is_an_array_of_names() -> None:
    result = runner.invoke(app, ["policy", "list", "--json"])
    names = [p["name"] for p in json.loads(result.stdout)]
    assert "read-only" in names and "sales-rep" in names
