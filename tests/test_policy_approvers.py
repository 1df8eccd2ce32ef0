"""Who may approve what: ``approvers:`` in a policy, merged through ``extends``, named by
the first approve entry that covers a call, carried by the decision and stored with the
request (so every process that answers it knows the roles)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Approvals, Guard, Policy
from closeguard.store import Store
from closeguard.store.migrations import current, head
from closeguard.tools.catalog import classify
from closeguard.tools.errors import ConfigError
from tests._pg import fresh_database

BASE = """\
name: base
grants: {"*": destructive}
approve:
  - destructive
  - opportunity.update
approvers:
  opportunity.update: [sales-manager]
"""


def _policy(tmp_path: Path, child: str) -> Policy:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "child.yaml").write_text(child)
    return Policy.load(tmp_path / "child.yaml")


def test_roles_per_entry_default_admin_and_extends(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "extends: base.yaml\napprove: [task.create]\n")
    guard = Guard(policy)
    update = guard.check(classify("PUT", "/opportunity/oppo_1/", {"value": 5}))
    assert update.outcome == "approve" and update.approvers == ("sales-manager",)
    delete = guard.check(classify("DELETE", "/lead/lead_1/"))
    assert delete.approvers == ("admin",) and delete.rule == "approve[base.yaml:4]"
    task = guard.check(classify("POST", "/task/", {"lead_id": "lead_1", "text": "x"}))
    assert task.approvers == ("admin",) and task.rule == "approve[child.yaml:2]"


def test_a_child_replaces_roles_per_key_and_sets_the_default(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        "extends: base.yaml\napprovers:\n  opportunity.update: [vp, sales-manager]\n"
        "  default: [ops]\n",
    )
    guard = Guard(policy)
    update = guard.check(classify("PUT", "/opportunity/oppo_1/", {"value": 5}))
    assert update.approvers == ("vp", "sales-manager")
    assert guard.check(classify("DELETE", "/lead/lead_1/")).approvers == ("ops",)
    assert policy.approvers == {"opportunity.update": ("vp", "sales-manager"), "default": ("ops",)}


def test_the_first_entry_that_covers_a_call_names_the_roles() -> None:
    policy = Policy.from_yaml(
        "grants: {'*': destructive}\napprove: [opportunity, write]\n"
        "approvers: {opportunity: [sales-manager], write: [ops]}\n"
    )
    guard = Guard(policy)
    assert guard.check(classify("DELETE", "/opportunity/o/")).approvers == ("sales-manager",)
    assert guard.check(classify("DELETE", "/lead/l/")).approvers == ("ops",)
    inline = Policy.from_yaml(
        "grants: {'*': destructive}\n"
        "approve:\n  - {endpoint: lead.delete, approvers: [owner]}\n  - lead\n"
        "approvers: {lead: [ops]}\n"
    )
    assert Guard(inline).check(classify("DELETE", "/lead/l/")).approvers == ("owner",)
    assert Guard(inline).check(classify("PUT", "/lead/l/", {"name": "x"})).approvers == ("ops",)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("approve: [lead]\napprovers:\n  leads: [ops]\n", 3, "'leads'; did you mean lead?"),
        ("approve: [lead]\napprovers: {lead: []}\n", 2, "non-empty list of roles"),
        ("approve: [lead]\napprovers:\n  lead: ['sales manager']\n", 3, "is not a role name"),
        ("approvers: [ops]\n", 1, "approvers maps approve entries"),
        ("approve:\n  - {endpoint: lead.delete, approver: [x]}\n", 2, "unknown approve entry"),
        ("deny:\n  - {endpoint: lead.delete, approvers: [x]}\n", 2, "unknown deny entry key"),
    ],
)
def test_mistakes_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        Policy.from_yaml("grants: {'*': destructive}\n" + text, file="p.yaml")
    assert info.value.file == "p.yaml" and info.value.line == line + 1, str(info.value)
    assert words in str(info.value)


def test_roles_are_stored_with_the_request(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    approvals = Approvals(store)
    call = classify("PUT", "/opportunity/oppo_1/", {"value": 5})
    asked = approvals.request(
        call, method="PUT", path="/opportunity/oppo_1/", approvers=("sales-manager", "vp")
    )
    other = Approvals(Store(f"sqlite:///{tmp_path / 's.db'}"))
    again = other.get(asked.id)
    assert again is not None and again.approvers == ("sales-manager", "vp")
    assert again.as_dict()["approvers"] == ["sales-manager", "vp"]
    plain = approvals.request(classify("DELETE", "/lead/l/"), method="DELETE", path="/lead/l/")
    assert plain.approvers == ("admin",)


def test_a_store_before_roles_gets_the_column_and_old_rows_read_as_admin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    approvals = Approvals(store)
    asked = approvals.request(classify("DELETE", "/lead/l/"), method="DELETE", path="/lead/l/")
    store.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE approvals DROP COLUMN approvers"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    engine.dispose()
    reopened = Store(url)
    with reopened.engine.connect() as conn:
        assert current(conn) == head()
    found = Approvals(reopened).get(asked.id)
    assert found is not None and found.approvers == ("admin",)
    roles = Approvals(reopened).request(
        classify("DELETE", "/lead/m/"), method="DELETE", path="/lead/m/", approvers=["ops"]
    )
    assert roles.approvers == ("ops",)


def test_policy_list_reads_folded_descriptions_from_the_yaml() -> None:
    result = CliRunner().invoke(app, ["policy", "list", "--json"])
    assert result.exit_code == 0, result.output
    shipped = {p["name"]: p["description"] for p in json.loads(result.output)}
    assert shipped["event-intake"].startswith("The workflow runtime's own intake.")
    assert not any(d.startswith((">", "|")) for d in shipped.values())


def test_explain_shows_who_may_approve(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(BASE)
    result = CliRunner().invoke(app, ["policy", "explain", str(policy), "--json"])
    rows = {(r["endpoint"], r["access"]): r for r in json.loads(result.output)}
    assert rows[("opportunity.update", "write")]["approvers"] == ["sales-manager"]
    assert rows[("lead.delete", "destructive")]["approvers"] == ["admin"]
    assert rows[("lead.get", "read")]["approvers"] == []
    table = CliRunner().invoke(app, ["policy", "explain", str(policy)])
    assert "approvers: sales-manager" in table.output
    assert "approve[p.yaml:4]" in table.output


def test_role_names_follow_the_accounts_rule() -> None:
    with pytest.raises(ConfigError, match="not a role name"):
        Policy.from_yaml("grants: {'*': write}\napprove: [lead]\napprovers: {lead: [Sales]}\n")


def test_a_postgresql_store_before_roles_gets_the_column() -> None:
    with fresh_database() as url:
        store = Store(url)
        asked = Approvals(store).request(
            classify("DELETE", "/lead/l/"), method="DELETE", path="/lead/l/"
        )
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE approvals DROP COLUMN approvers"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
        store.dispose()
        reopened = Store(url)
        found = Approvals(reopened).get(asked.id)
        assert found is not None and found.approvers == ("admin",)
        roles = Approvals(reopened).request(
            classify("DELETE", "/lead/m/"), method="DELETE", path="/lead/m/", approvers=["ops"]
        )
        again = Approvals(reopened).get(roles.id)
        assert again is not None and again.approvers == ("ops",)
        reopened.dispose()
