"""``closeguard policy replay``: a new policy tried on the audit log of a real demo run.

The log is recorded once per module by ``closeguard run`` on its embedded simulator (the
packaged workflows, a duplicate lead whose merge asks a person); every expectation is
counted from that log itself, and the store must read the same after each replay.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import AuditLog, Policy
from closeguard.guardrails.replay import replay
from closeguard.store import Store
from tests._pg import schema_store

runner = CliRunner()

STRICT = """\
name: new-lead-triage
extends: new-lead-triage
deny:
  - organization
  - custom_field
approve:
  - task.create
"""
LOOSE = """\
name: duplicate-lead-merge
grants:
  lead: destructive
"""
QUOTA = """\
name: new-lead-triage
extends: new-lead-triage
limits:
  per_window: {window: 1h, writes: 1}
"""
ON_STATUS = """\
name: won-deal-handoff
extends: won-deal-handoff
approve:
  - endpoint: lead.update
    when: {status_type: {in: [won]}}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store of one ``closeguard run`` demo (embedded simulator, packaged workflows)."""
    home = tmp_path_factory.mktemp("demo")
    env = {
        "XDG_DATA_HOME": str(home / "data"),
        "CLOSE_API_KEY": None,
        "CLOSEGUARD_MODEL": None,
        "CLOSEGUARD_STORE_URL": None,
    }
    result = runner.invoke(app, ["run", "--duration", "8"], env=env)
    assert result.exit_code == 0, result.output
    db = home / "data" / "closeguard" / "demo" / "store.db"
    assert db.is_file()
    return db


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


def _rows(db: Path) -> list[dict[str, Any]]:
    """The calls in the log: first attempts of requests (no decisions, no guard reads)."""
    store = Store(f"sqlite:///{db}", create=False)
    try:
        seen, out = set(), []
        for row in AuditLog(store).rows():
            if row["method"] in ("DECIDE", "TOOL") or row["rule"] == "when.statuses":
                continue
            if row["call_id"] not in seen:
                seen.add(row["call_id"])
                out.append(row)
        return out
    finally:
        store.dispose()


def _replay(db: Path, tmp_path: Path, text: str | None, *args: str) -> dict[str, Any]:
    """Run ``policy replay --json`` on ``db``; the store must read the same afterwards."""
    source = "read-only"
    if text is not None:
        policy_file = tmp_path / "new.yaml"
        policy_file.write_text(text)
        source = str(policy_file)
    before = _dump(db)
    result = runner.invoke(
        app,
        ["policy", "replay", source, "--json", *args],
        env={"CLOSEGUARD_STORE_URL": f"sqlite:///{db}"},
    )
    assert result.exit_code == 0, result.output
    assert _dump(db) == before
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_stricter_policy_denies_and_asks_what_ran(demo: Path, tmp_path: Path) -> None:
    calls = [r for r in _rows(demo) if r["policy"] == "new-lead-triage"]
    reads = [r for r in calls if r["endpoint"] in ("organization.get", "custom_field.lead.list")]
    tasks = [r for r in calls if r["endpoint"] == "task.create" and r["decision"] == "allow"]
    assert reads and tasks
    out = _replay(demo, tmp_path, STRICT)
    summary = out["summary"]
    assert summary["calls"] == len(calls)
    assert summary["newly_denied"] == len(reads)
    assert summary["newly_approval"] == len(tasks)
    assert summary["newly_allowed"] == summary["undecidable"] == 0
    assert summary["unchanged"] == len(calls) - len(reads) - len(tasks)
    changes = {c["seq"]: c for c in out["changes"]}
    assert set(changes) == {r["seq"] for r in [*reads, *tasks]}
    task = changes[tasks[0]["seq"]]
    assert (task["endpoint"], task["before"], task["after"]) == ("task.create", "allow", "approve")
    assert task["rule_after"] == "approve[new.yaml:7]" and task["path"] == "/task/"
    grouped = {(g["endpoint"], g["after"]): g for g in out["by_endpoint"]}
    assert grouped[("task.create", "approve")]["calls"] == len(tasks)
    assert grouped[("task.create", "approve")]["examples"] == [r["seq"] for r in tasks][:3]


def test_a_looser_policy_allows_what_asked_a_person(demo: Path, tmp_path: Path) -> None:
    merges = [
        r
        for r in _rows(demo)
        if r["policy"] == "duplicate-lead-merge" and r["endpoint"] == "lead.merge"
    ]
    assert merges and {r["decision"] for r in merges} <= {"approval_required", "approved"}
    out = _replay(demo, tmp_path, LOOSE)
    assert out["summary"]["newly_allowed"] == len(merges)
    assert out["summary"]["newly_denied"] == out["summary"]["newly_approval"] == 0
    assert {(c["endpoint"], c["before"], c["after"]) for c in out["changes"]} == {
        ("lead.merge", "approve", "allow")
    }
    assert [c["rule_after"] for c in out["changes"]] == ["grants.lead"] * len(merges)


def test_quota_windows_are_replayed_in_order(demo: Path, tmp_path: Path) -> None:
    writes = [
        r
        for r in _rows(demo)
        if r["policy"] == "new-lead-triage" and r["access"] != "read" and r["decision"] == "allow"
    ]
    per_window = Counter(int(datetime.fromisoformat(r["ts"]).timestamp() // 3600) for r in writes)
    refused = sum(n - 1 for n in per_window.values())
    assert refused > 0
    out = _replay(demo, tmp_path, QUOTA)
    quota = out["summary"]["quota"]
    assert quota["newly_limited"] == out["summary"]["newly_denied"] == refused
    assert quota["newly_limited_by_rule"] == {"limits.per_window.writes": refused}
    first_in_window = {
        min(
            r["seq"]
            for r in writes
            if int(datetime.fromisoformat(r["ts"]).timestamp() // 3600) == w
        )
        for w in per_window
    }
    limited = {c["seq"] for c in out["changes"]}
    assert limited == {r["seq"] for r in writes} - first_in_window


def test_actor_and_since_choose_the_calls(demo: Path, tmp_path: Path) -> None:
    by_actor = [r for r in _rows(demo) if r["actor"] == "new-lead-triage"]
    writes = [r for r in by_actor if r["access"] != "read"]
    out = _replay(demo, tmp_path, None, "--actor", "new-lead-triage")
    assert out["selected"] == {"policy": None, "actor": "new-lead-triage", "since": None}
    assert out["summary"]["calls"] == len(by_actor)
    assert out["summary"]["newly_denied"] == len(writes) > 0
    assert {c["actor"] for c in out["changes"]} == {"new-lead-triage"}
    assert {c["rule_after"] for c in out["changes"]} == {"grants.*"}
    recent = _replay(demo, tmp_path, None, "--actor", "new-lead-triage", "--since", "1d")
    assert recent["summary"] == out["summary"]
    later = by_actor[len(by_actor) // 2]["ts"]
    half = _replay(demo, tmp_path, None, "--actor", "new-lead-triage", "--since", later)
    assert half["summary"]["calls"] == len([r for r in by_actor if r["ts"] >= later])
    future = _replay(demo, tmp_path, None, "--actor", "new-lead-triage", "--since", "2999-01-01")
    assert future["summary"]["calls"] == 0 and future["changes"] == []


def test_a_when_rule_on_statuses_is_undecidable(demo: Path, tmp_path: Path) -> None:
    updates = [
        r
        for r in _rows(demo)
        if r["policy"] == "won-deal-handoff"
        and r["endpoint"] == "lead.update"
        and "status_id" in json.loads(r["args"])["body"]
    ]
    assert updates
    out = _replay(demo, tmp_path, ON_STATUS)
    assert out["summary"]["undecidable"] == len(updates)
    assert out["changes"] == []
    (why,) = {u["why"] for u in out["undecidable"]}
    assert "status_label/status_type" in why


def test_text_output_and_one_line_errors(demo: Path, tmp_path: Path) -> None:
    policy_file = tmp_path / "strict.yaml"
    policy_file.write_text(STRICT)
    env = {"CLOSEGUARD_STORE_URL": f"sqlite:///{demo}"}
    shown = runner.invoke(app, ["policy", "replay", str(policy_file)], env=env)
    assert shown.exit_code == 0, shown.output
    assert "recorded under policy 'new-lead-triage'" in shown.output
    assert "What would change, by endpoint" in shown.output
    assert "allow -> approve" in shown.output and "allow -> deny" in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngrants:\n  lead: sometimes\n")
    for args, code, words in (
        (["nope.yaml"], 1, "not found"),
        ([str(bad)], 1, "bad.yaml:3"),
        (["read-only", "--since", "last tuesday"], 2, "--since"),
    ):
        result = runner.invoke(app, ["policy", "replay", *args], env=env)
        assert result.exit_code == code, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0]


def _row(seq: int, **values: Any) -> dict[str, Any]:
    return {
        "actor": "bot",
        "run_id": "run_1",
        "call_id": f"c{seq}",
        "attempt": 1,
        "policy": "old-rows",
        "endpoint": "task.create",
        "method": "POST",
        "path": "/task/",
        "access": "write",
        "decision": "allow",
        "status_code": 200,
        **values,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, store: Store) -> Iterator[Store]:
    if request.param == "sqlite":
        yield store
        return
    with schema_store("replay_") as pg:
        yield pg


def test_what_a_row_lacks_is_undecidable_not_guessed(any_store: Store) -> None:
    """Rows as an older closeguard wrote them (no scope) and a shortened argument, on
    SQLite and PostgreSQL."""
    store = any_store
    log = AuditLog(store)
    long_text = "x" * 200 + "…[+100 chars]"
    log.append(_row(1, args={"body": {"lead_id": "lead_a", "text": "hi"}, "params": {}}))
    scoped = {"body": {"lead_id": "lead_b", "text": "hi"}, "params": {}}
    log.append(_row(2, args={**scoped, "scope": {"triggered": ["lead_a"]}}))
    log.append(_row(3, args={**scoped, "scope": {"triggered": ["lead_b"]}}))
    log.append(_row(4, args={"body": {"lead_id": "lead_b", "text": long_text}, "params": {}}))
    log.append(_row(5, method="DECIDE", endpoint=None, args={"via": "cli"}), flush=True)
    head = log.head()
    policy = Policy.from_yaml(
        "name: old-rows\ngrants: {task: write}\n"
        "constraints:\n  task.create:\n    lead_id: {scope: triggered}\n"
    )
    report = replay(store, policy)
    assert report.calls == 4 and log.head() == head
    assert [(u.seq, u.why) for u in report.undecidable] == [
        (1, "the row does not record the run's triggered leads (scope: triggered)"),
        (4, "the row does not record the run's triggered leads (scope: triggered)"),
    ]
    assert [(c.seq, c.after, c.rule_after) for c in report.changes] == [
        (2, "deny", "constraints.task.create.lead_id")
    ]
    matching = Policy.from_yaml(
        "name: old-rows\ngrants: {task: write}\n"
        "approve:\n  - endpoint: task.create\n    when: {text: {matches: '^x+$'}}\n"
    )
    report = replay(store, matching)
    assert [(u.seq, u.why) for u in report.undecidable] == [
        (4, "the log redacted or shortened text")
    ]
    assert report.unchanged == 3
    log.append(_row(6, run_id=None, args={"body": {"lead_id": "lead_a"}, "params": {}}))
    log.append(
        _row(
            7,
            run_id=None,
            endpoint="lead.get",
            method="GET",
            path="/lead/lead_a/",
            access="read",
            args={"body": {}, "params": {}},
        ),
        flush=True,
    )
    head = log.head()
    per_run = Policy.from_yaml(
        "name: old-rows\ngrants: {task: write, lead: read}\n"
        "limits: {per_run: {per_endpoint: {task.create: 1}}}\n"
    )
    report = replay(store, per_run)
    assert [(u.seq, u.why) for u in report.undecidable] == [
        (6, "the row does not record which session its per-run limits count")
    ]
    assert [(c.seq, c.rule_after) for c in report.changes] == [
        (2, "limits.per_run.per_endpoint.task.create"),
        (3, "limits.per_run.per_endpoint.task.create"),
        (4, "limits.per_run.per_endpoint.task.create"),
    ]
    assert report.unchanged == 2
    assert replay(store, matching, actor="someone-else").calls == 0
    assert replay(store, matching, since="2999-01-01T00:00:00+00:00").calls == 0
    assert log.head() == head and log.verify().ok


@pytest.mark.parametrize("text", [STRICT, LOOSE, QUOTA, ON_STATUS], ids=range(4))
def test_the_standard_library_reader_replays_as_the_store_does(demo: Path, text: str) -> None:
    """``policy replay`` reads a current SQLite store on ``store/reader.py`` (no SQLAlchemy
    import); the report is the one ``replay`` makes from the ``Store``'s audit rows."""
    from closeguard.store.reader import open_reader

    policy = Policy.from_yaml(text)
    store = Store(f"sqlite:///{demo}", create=False)
    reader = open_reader(f"sqlite:///{demo}")
    assert reader is not None
    try:
        with reader:
            report = replay(reader.audit, policy)
        theirs = replay(store, policy)
    finally:
        store.dispose()
    assert report.calls == theirs.calls > 0
    assert report.as_json(5) == theirs.as_json(5)
