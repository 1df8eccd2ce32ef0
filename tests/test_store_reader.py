"""The standard-library reader of a SQLite store reads what the ``Store`` reads.

``closeguard.store.reader`` serves the command line's read commands without SQLAlchemy; its
queries restate the table groups' read methods, so each is compared here with them on one
store holding every case (approvals in every state, expired ones included; runs of several
workflows and statuses; an audit chain, tampered and not), and it must refuse every store
it cannot read as is.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from closeguard.guardrails import chain
from closeguard.guardrails.approval_record import from_row
from closeguard.guardrails.approvals import Approvals
from closeguard.guardrails.audit import AuditLog
from closeguard.store import Store
from closeguard.store.audit import AuditRows
from closeguard.store.reader import Reader, open_reader, sqlite_path
from closeguard.store.records import (
    APPROVAL_COLUMNS,
    AUDIT_COLUMNS,
    EFFECT_COLUMNS,
    RUN_COLUMNS,
    USER_COLUMNS,
    run_row,
)
from closeguard.store.runs import RunRows
from closeguard.tools.catalog import BY_NAME, Call


def test_the_column_lists_are_the_tables() -> None:
    tables = Store("sqlite://").tables
    assert tuple(tables.audit.c.keys()) == AUDIT_COLUMNS
    assert tuple(tables.approvals.c.keys()) == APPROVAL_COLUMNS
    assert tuple(tables.runs.c.keys()) == RUN_COLUMNS
    assert tuple(tables.effects.c.keys()) == EFFECT_COLUMNS
    assert tuple(tables.users.c.keys()) == USER_COLUMNS


def _call(lead: str) -> Call:
    return Call(BY_NAME["lead.delete"], "destructive", {"id": lead}, {}, {})


@pytest.fixture
def filled(tmp_path: Path) -> tuple[str, Store]:
    """A store with approvals in every state, runs and audit rows."""
    url = f"sqlite:///{tmp_path / 'closeguard.db'}"
    store = Store(url)
    approvals = Approvals(store)
    late = Approvals(store, ttl=-5)
    for n in range(3):
        approvals.request(_call(f"lead_p{n}"), method="DELETE", path=f"/lead/lead_p{n}/")
    late.request(_call("lead_late"), method="DELETE", path="/lead/lead_late/")
    yes = approvals.request(_call("lead_yes"), method="DELETE", path="/lead/lead_yes/")
    approvals.approve(yes.id, by="ana", roles=("admin",))
    ok = approvals.request(_call("lead_ok"), method="DELETE", path="/lead/lead_ok/")
    approvals.approve(ok.id, by="ana", roles=("admin",))
    no = approvals.request(_call("lead_no"), method="DELETE", path="/lead/lead_no/")
    approvals.reject(no.id, by="ana", roles=("admin",), note="no")
    used = approvals.request(_call("lead_used"), method="DELETE", path="/lead/lead_used/")
    approvals.approve(used.id, by="ana", roles=("admin",))
    assert approvals.consume(used.id)
    with store.engine.begin() as conn:
        conn.execute(
            store.tables.approvals.update()
            .where(store.tables.approvals.c.id == yes.id)
            .values(expires=time.time() - 1)
        )
    runs = RunRows(store)
    with store.engine.begin() as conn:
        runs.insert(
            conn,
            [
                {
                    "id": f"run_{n}",
                    "workflow": ("a", "b")[n % 2],
                    "trigger_key": f"k{n}",
                    "kind": "event",
                    "lead_id": f"lead_{n % 3}",
                    "payload": {"event": {"lead_id": f"lead_{n % 3}"}, "n": n},
                }
                for n in range(7)
            ],
        )
    claimed = runs.claim("w1", 60)
    assert claimed is not None
    effects = store.tables.effects
    with store.engine.begin() as conn:
        for n, (key, status, result) in enumerate(
            [("a", "done", '{"id": "task_1"}'), ("b", "intent", None), ("c", "done", '"x"')]
        ):
            conn.execute(
                effects.insert().values(
                    run_id="run_1", key=key, status=status, result=result, created=n, updated=n
                )
            )
    log = AuditLog(store)
    for n in range(11):
        entry = {"actor": "t", "endpoint": "lead.get", "method": "GET", "access": "read"}
        run = f"run_{n % 2}"
        row = {**entry, "path": f"/lead/lead_{n}/", "run_id": run, "decision": "allow"}
        log.append({**row, "args": {"n": n}})
    log.flush()
    return url, store


def _reader(url: str) -> Reader:
    reader = open_reader(url)
    assert reader is not None
    return reader


@pytest.mark.parametrize(
    "status", [None, "pending", "approved", "rejected", "consumed", "expired"], ids=str
)
def test_approvals_are_listed_as_the_store_lists_them(
    filled: tuple[str, Store], status: str | None
) -> None:
    url, store = filled
    now = time.time()
    approvals = Approvals(store, clock=lambda: now)
    with _reader(url) as reader:
        mine = [from_row(r, now) for r in reader.approvals(status, now, limit=100)]
        assert reader.approvals_due(now)  # the late request: ``approvals list`` writes
        for a in mine:
            assert reader.approval(a.id) is not None
            assert from_row(reader.approval(a.id) or {}, now) == approvals.get(a.id)
        assert reader.approval("appr_none") is None
    theirs = approvals.list(status, limit=100)  # type: ignore[arg-type]
    assert mine == theirs
    assert mine, "every status has a row in the fixture"


def test_no_due_request_once_expiry_is_recorded(filled: tuple[str, Store]) -> None:
    url, store = filled
    now = time.time()
    Approvals(store, clock=lambda: now).expire()
    with _reader(url) as reader:
        assert not reader.approvals_due(now)


@pytest.mark.parametrize(
    "query",
    [{}, {"status": "queued"}, {"status": ("queued", "running")}, {"workflow": "a"}],
    ids=str,
)
def test_runs_are_listed_as_the_store_lists_them(
    filled: tuple[str, Store], query: dict[str, object]
) -> None:
    url, store = filled
    with _reader(url) as reader:
        mine = [run_row(r) for r in reader.runs(limit=5, **query)]  # type: ignore[arg-type]
    theirs = RunRows(store).list(limit=5, **query)  # type: ignore[arg-type]
    assert mine == theirs and mine


def test_one_run_is_read_as_the_store_reads_it(filled: tuple[str, Store]) -> None:
    from closeguard.cli.runs import audit_rows_for
    from closeguard.store.effects import EffectRows

    url, store = filled
    runs = RunRows(store)
    with _reader(url) as reader:
        assert run_row(reader.run("run_1") or {}) == runs.get("run_1")
        assert reader.run("run_9") is None
        for prefix in ("run_", "run_1", "r", "x"):
            assert [run_row(r) for r in reader.runs_with_prefix(prefix)] == runs.find(prefix)
        assert reader.runs_with_prefix("%") == []  # a prefix, not a LIKE pattern
        journal = reader.effects("run_1")
        assert [(e["key"], e["status"]) for e in journal] == [
            (e.key, e.status) for e in EffectRows(store).for_run("run_1")
        ]
        assert len(journal) == 3 and reader.effects("run_2") == []
        assert reader.audit.for_run("run_1") == audit_rows_for(store, "run_1")
        assert len(reader.audit.for_run("run_0")) == 6


def test_audit_rows_are_read_as_the_store_reads_them(filled: tuple[str, Store]) -> None:
    url, store = filled
    rows = AuditRows(store)
    with _reader(url) as reader:
        audit = reader.audit
        assert audit.head() == rows.head()
        assert audit.tail(4) == rows.tail(4)
        assert audit.get(3) == rows.get(3) and audit.get(99) is None
        assert list(audit.rows(chunk=3)) == list(rows.rows(chunk=3))
        assert list(audit.rows(chunk=2, start=4, stop=8)) == list(rows.rows(start=4, stop=8))
        assert audit.with_decision("allow") == rows.with_decision("allow")
        assert chain.verify(audit) == AuditLog(store).verify()
        since = str(rows.get(8)["ts"])  # type: ignore[index]
        for kwargs in [
            {},
            {"actor": "t", "chunk": 4},
            {"actor": "ana"},
            {"since": since},
            {"actor": "t", "since": since, "chunk": 1},
            {"policy": "nope"},
        ]:
            mine = list(audit.matching(**kwargs))  # type: ignore[arg-type]
            assert mine == list(rows.matching(**kwargs)), kwargs  # type: ignore[arg-type]
        assert next(r["seq"] for r in audit.matching(actor="t", since=since)) == 8


def test_a_tampered_chain_reads_the_same_broken_way(filled: tuple[str, Store]) -> None:
    url, store = filled
    head = AuditLog(store).head()
    with store.engine.begin() as conn:
        audit = store.tables.audit
        conn.execute(audit.update().where(audit.c.seq == 5).values(path="/lead/forged/"))
        conn.execute(audit.delete().where(audit.c.seq == 11))
    expected = AuditLog(store).verify(expect_head=head)
    assert not expected.ok
    with _reader(url) as reader, reader.snapshot():
        assert chain.verify(reader.audit, expect_head=head) == expected


def test_the_reader_writes_nothing(filled: tuple[str, Store]) -> None:
    url, store = filled
    store.dispose()
    path = sqlite_path(url)
    assert path is not None
    before = path.read_bytes()
    with _reader(url) as reader:
        reader.approvals(None, time.time(), limit=10)
        list(reader.audit.rows())
        reader.runs(status=("queued",), limit=10)
    assert path.read_bytes() == before


def test_only_a_plain_sqlite_file_at_the_head_is_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'closeguard.db'}"
    assert open_reader(url) is None  # no file yet
    Store(url).dispose()
    reader = open_reader(url)
    assert reader is not None
    reader.close()
    for other in (
        "postgresql://127.0.0.1/test",
        "sqlite://",
        "sqlite:///:memory:",
        f"sqlite+pysqlite:///{tmp_path / 'closeguard.db'}",
        f"{url}?mode=ro",
        f"sqlite:///{tmp_path / 'with%20space.db'}",
    ):
        assert sqlite_path(other) is None, other
        assert open_reader(other) is None, other
    (tmp_path / "notes.db").write_text("not a database")
    assert open_reader(f"sqlite:///{tmp_path / 'notes.db'}") is None
    sqlite3.connect(tmp_path / "empty.db").close()
    assert open_reader(f"sqlite:///{tmp_path / 'empty.db'}") is None
    with sqlite3.connect(tmp_path / "closeguard.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    conn.close()
    assert open_reader(url) is None  # opening it through the Store migrates it
