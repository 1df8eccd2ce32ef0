"""``closeguard policy`` and ``closeguard approvals`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Approvals
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
    names = {row["endpoint"] for row in data["endpoints"]}
    assert names == {ep.name for ep in ENDPOINTS}
    by = {(r["endpoint"], r["access"]): r for r in data["endpoints"]}
    assert by[("lead.delete", "destructive")]["outcome"] == "deny"
    assert by[("activity.email.create", "destructive")]["escalated"] is True
    assert by[("activity.email.create", "destructive")]["outcome"] == "deny"
    assert by[("activity.email.create", "write")]["constraints"] == [
        "status: in ['draft'], required"]
    assert by[("opportunity.update", "write")]["outcome"] == "approve"
    table = runner.invoke(app, ["policy", "explain", "read-only"])
    assert table.exit_code == 0 and "lead.merge" in table.output and "deny" in table.output


def test_approvals_list_show_approve_reject(store: Store) -> None:
    approvals = Approvals(store)
    first = approvals.request(classify("DELETE", "/lead/lead_1/"), method="DELETE",
                              path="/lead/lead_1/", actor="bot", rule="approve[0]")
    second = approvals.request(classify("DELETE", "/lead/lead_2/"), method="DELETE",
                               path="/lead/lead_2/", actor="bot")
    listed = runner.invoke(app, ["approvals", "list", "--json"])
    assert listed.exit_code == 0
    assert {a["id"] for a in json.loads(listed.output)} == {first.id, second.id}
    assert first.id in runner.invoke(app, ["approvals", "list"]).output

    shown = runner.invoke(app, ["approvals", "show", first.id, "--json"])
    assert json.loads(shown.output)["path"] == "/lead/lead_1/"

    ok = runner.invoke(app, ["approvals", "approve", first.id, "--by", "ana", "--note", "fine"])
    assert ok.exit_code == 0 and "approved" in ok.output
    got = approvals.get(first.id)
    assert got is not None and got.status == "approved" and got.decided_by == "ana"
    again = runner.invoke(app, ["approvals", "approve", first.id])
    assert again.exit_code == 1 and "not pending" in again.output

    no = runner.invoke(app, ["approvals", "reject", second.id, "--by", "ana"])
    assert no.exit_code == 0
    pending = json.loads(runner.invoke(app, ["approvals", "list", "--json"]).output)
    assert pending == []
    every = json.loads(runner.invoke(app, ["approvals", "list", "--all", "--json"]).output)
    assert {a["status"] for a in every} == {"approved", "rejected"}
    assert runner.invoke(app, ["approvals", "show", "appr_missing"]).exit_code == 1
