"""The standard-library writer (``store/writer.py``) changes a SQLite store exactly as the
table groups do: the same calls on two identical stores, one through ``ApprovalRows``,
``UserRows`` and ``AuditRows``, one through the writer, give the same answers and leave the
same rows; the guard's ``Approvals``, ``Accounts`` and ``AuditLog`` work on either."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from closeguard.guardrails.accounts import Accounts
from closeguard.guardrails.approvals import Approvals
from closeguard.guardrails.audit import AuditLog
from closeguard.store import Store
from closeguard.store.approvals import ApprovalRows
from closeguard.store.audit import _statements
from closeguard.store.auditsql import Statements
from closeguard.store.users import UserRows
from closeguard.store.writer import Writer, open_writer
from closeguard.tools.errors import ApprovalError, ApprovalForbidden, StoreError

NOW = 1_800_000_000.0


def _approval(n: int, *, call_hash: str, created: float, expires: float) -> dict[str, Any]:
    return {
        "id": f"appr_{n:016x}",
        "call_hash": call_hash,
        "status": "pending",
        "created": created,
        "expires": expires,
        "policy": "p",
        "actor": "bot",
        "run_id": None,
        "endpoint": "lead.delete",
        "method": "DELETE",
        "path": f"/lead/lead_{n}/",
        "access": "destructive",
        "rule": "approve.destructive",
        "reason": "destructive",
        "args": '{"body":{},"params":{}}',
        "approvers": '["admin"]',
    }


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in ("approvals", "users", "audit", "audit_head")
        }


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Store, Writer, Path, Path]:
    """Two fresh stores at the newest revision: one for the table groups, one for the writer."""
    paths = tmp_path / "groups.db", tmp_path / "writer.db"
    store = Store(f"sqlite:///{paths[0]}")
    Store(f"sqlite:///{paths[1]}").dispose()
    writer = open_writer(f"sqlite:///{paths[1]}")
    assert writer is not None
    yield store, writer, *paths
    writer.close()
    store.dispose()


Call = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A storage method's name, positional and keyword arguments."""


def _answer_alike(calls: list[Call], groups: Any, ours: Any) -> None:
    """Each call made on the table group, then on the writer's storage: same answers."""
    for name, args, kwargs in calls:
        expected = getattr(groups, name)(*args, **kwargs)
        assert getattr(ours, name)(*args, **kwargs) == expected, (name, args)


def test_the_append_sql_is_the_sqlite_dialects(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    mine, theirs = Statements.sqlite(), _statements(store)
    for name in ("lock", "head", "init", "advance", "range", "_into", "_values", "serialize"):
        assert getattr(mine, name) == getattr(theirs, name), name
    store.dispose()


def test_approval_statements_match(pair: tuple[Store, Writer, Path, Path]) -> None:
    store, writer, a, b = pair
    calls: list[Call] = [
        ("open_or_insert", (_approval(1, call_hash="h1", created=NOW, expires=NOW + 60), NOW), {}),
        ("open_or_insert", (_approval(2, call_hash="h1", created=NOW, expires=NOW + 60), NOW), {}),
        (
            "open_or_insert",
            (_approval(3, call_hash="h3", created=NOW + 1, expires=NOW + 5), NOW),
            {},
        ),
        (
            "open_or_insert",
            (_approval(4, call_hash="h4", created=NOW + 2, expires=NOW + 9), NOW),
            {},
        ),
        (
            "open_or_insert",
            (_approval(5, call_hash="h5", created=NOW + 3, expires=NOW + 99), NOW),
            {},
        ),
        ("get", ("appr_0000000000000001",), {}),
        ("get", ("appr_missing",), {}),
        ("decide", ("appr_0000000000000001", "approved"), {"by": "x", "note": "n", "now": NOW}),
        ("decide", ("appr_0000000000000001", "rejected"), {"by": "y", "note": None, "now": NOW}),
        (
            "decide",
            ("appr_0000000000000003", "approved"),
            {"by": "x", "note": None, "now": NOW + 6},
        ),
        ("decide", ("appr_0000000000000005", "rejected"), {"by": "z", "note": None, "now": NOW}),
        ("granted", ("h1", NOW), {}),
        ("granted", ("h1", NOW + 61), {}),
        ("granted", ("h3", NOW), {}),
        ("due", (NOW + 10,), {}),
        ("due", (NOW + 10,), {"limit": 1}),
        ("expire", ("appr_0000000000000004", NOW + 1), {}),
        ("expire", ("appr_0000000000000004", NOW + 10), {}),
        ("expire", ("appr_0000000000000004", NOW + 11), {}),
        ("consume", ("appr_0000000000000001", NOW + 61), {}),
        ("consume", ("appr_0000000000000001", NOW + 1), {}),
        ("consume", ("appr_0000000000000001", NOW + 2), {}),
    ]
    for status in (None, "pending", "approved", "rejected", "consumed", "expired"):
        calls.append(("by_status", (status, NOW + 4), {"limit": 10}))
    calls.append(("by_status", (None, NOW), {"limit": 2}))
    _answer_alike(calls, ApprovalRows(store), writer.approval_rows)
    assert _dump(a)["approvals"] == _dump(b)["approvals"]


def test_user_statements_match(pair: tuple[Store, Writer, Path, Path]) -> None:
    store, writer, a, b = pair
    row = {
        "name": "ann",
        "roles": '["admin"]',
        "email": "ann@example.com",
        "disabled": False,
        "notify": "[]",
        "token_id": "t1",
        "token_hash": "h",
        "created": NOW,
        "updated": NOW,
    }
    calls: list[Call] = [
        ("insert", (row,), {}),
        ("insert", ({**row, "token_id": "t2"},), {}),
        ("insert", ({**row, "name": "bob", "email": None, "token_id": "t3"},), {}),
        ("insert", ({**row, "name": "cid", "token_id": "t1"},), {}),
        ("get", ("ann",), {}),
        ("get", ("nobody",), {}),
        ("by_token_id", ("t3",), {}),
        ("by_email", ("ann@example.com",), {}),
        ("set", ("bob",), {"disabled": True, "updated": NOW + 1}),
        ("set", ("nobody",), {"disabled": True}),
        ("all", (), {}),
    ]
    _answer_alike(calls, UserRows(store), writer.users)
    assert _dump(a)["users"] == _dump(b)["users"]


def test_the_guard_decides_alike_on_either(pair: tuple[Store, Writer, Path, Path]) -> None:
    """``Accounts``, ``Approvals`` and ``AuditLog`` over the writer: requests, decisions,
    refusals, expiry and rows appended give the same stored rows and chain (times and
    random ids fixed by the clock and the values)."""
    store, writer, a, b = pair
    sides = [
        (Approvals(store, clock=lambda: NOW), Accounts(store, clock=lambda: NOW), AuditLog(store)),
    ]
    log = AuditLog(None, rows=writer.audit)
    sides.append(
        (
            Approvals(None, rows=writer.approval_rows, audit=log, clock=lambda: NOW),
            Accounts(None, rows=writer.users, clock=lambda: NOW),
            log,
        )
    )
    for approvals, accounts, audit in sides:
        accounts.add("ann", roles=["admin"])
        accounts.add("rep", roles=["sales-rep"])
        assert accounts.get("ann") is not None and accounts.list()[1].name == "rep"
        for n in range(4):
            approvals._rows.open_or_insert(
                _approval(n, call_hash=f"h{n}", created=NOW - n, expires=NOW + 60 - 70 * (n == 3)),
                NOW,
            )
        approvals.approve("appr_0000000000000000", by="ann", roles=["admin"], note="ok")
        approvals.reject("appr_0000000000000001", by="ann", roles=["admin"])
        with pytest.raises(ApprovalForbidden):
            approvals.approve("appr_0000000000000002", by="rep", roles=["sales-rep"])
        with pytest.raises(ApprovalError, match="not pending"):
            approvals.approve("appr_0000000000000001", by="ann")
        assert [x.id for x in approvals.expire()] == ["appr_0000000000000003"]
        assert approvals.consume("appr_0000000000000000")
        assert [x.status for x in approvals.list()] == [
            "consumed",
            "rejected",
            "pending",
            "expired",
        ]
        for n in range(3):
            audit.append(
                {
                    "actor": "bot",
                    "method": "GET",
                    "path": f"/lead/{n}/",
                    "decision": "allow",
                    "ts": "t",
                    "args": {},
                }
            )
        audit.flush()
        assert audit.verify().ok
    left, right = _dump(a), _dump(b)
    assert left["approvals"] == right["approvals"]
    assert [r[:5] + r[7:] for r in left["users"]] == [r[:5] + r[7:] for r in right["users"]]
    strip = [tuple(v for i, v in enumerate(r) if i not in (1, 19, 20)) for r in left["audit"]]
    assert strip == [
        tuple(v for i, v in enumerate(r) if i not in (1, 19, 20)) for r in right["audit"]
    ]
    assert len(left["audit"]) == 2 + 1 + 3  # two decisions, an expiry, three calls


def test_a_failed_append_keeps_the_rows(tmp_path: Path) -> None:
    """A write the database refuses raises ``StoreError`` and keeps the rows for the next
    flush, as on the ``Store``."""
    path = tmp_path / "s.db"
    Store(f"sqlite:///{path}").dispose()
    writer = open_writer(f"sqlite:///{path}")
    assert writer is not None
    log = AuditLog(None, rows=writer.audit)
    holder = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    writer.conn.execute("PRAGMA busy_timeout=50")
    with pytest.raises(StoreError, match="1 rows kept"):
        log.append({"method": "GET", "path": "/x/", "decision": "allow", "args": {}}, flush=True)
    holder.execute("ROLLBACK")
    assert log.flush() == 1
    assert log.verify().ok and log.head()[0] == 1
    writer.close()


def test_the_writer_takes_only_a_current_plain_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    assert open_writer(f"sqlite:///{path}") is None
    Store(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    assert open_writer(f"sqlite:///{path}") is None
    assert open_writer("postgresql://127.0.0.1:5432/test") is None
    assert open_writer("sqlite://") is None


def test_the_guard_needs_a_store_or_a_storage() -> None:
    with pytest.raises(TypeError):
        Approvals(None)
    with pytest.raises(TypeError):
        AuditLog(None)
    with pytest.raises(TypeError):
        Accounts(None)


def test_a_run_is_requeued_as_the_store_requeues_it(pair: tuple[Store, Writer, Path, Path]) -> None:
    """``runs retry`` on the writer: the same rows as ``RunRows.requeue`` (SQLite has no job
    engine whose hook would have more to do)."""
    from closeguard.store.runs import RunRows

    store, writer, a, b = pair
    other = Store(f"sqlite:///{b}", create=False)
    states = {"run_0": "dead", "run_1": "failed", "run_2": "completed", "run_3": "running"}
    for s in (store, other):
        rows = RunRows(s, now=lambda: NOW)
        with s.engine.begin() as conn:
            rows.insert(
                conn,
                [
                    {"id": i, "workflow": "w", "trigger_key": i, "kind": "event", "payload": {}}
                    for i in states
                ],
            )
            for run_id, status in states.items():
                conn.execute(
                    s.tables.runs.update()
                    .where(s.tables.runs.c.id == run_id)
                    .values(status=status, attempts=3, worker="w1", lease_until=NOW + 5)
                )
    other.dispose()
    rows = RunRows(store, now=lambda: NOW + 1)
    for run_id in [*states, "run_none"]:
        expected = rows.requeue(run_id, ("dead", "failed"), attempts=0)
        assert writer.requeue(run_id, ("dead", "failed"), NOW + 1, attempts=0) == expected
    with sqlite3.connect(a) as left, sqlite3.connect(b) as right:
        query = "SELECT * FROM runs ORDER BY seq"
        assert left.execute(query).fetchall() == right.execute(query).fetchall()
        assert [r[0] for r in left.execute("SELECT status FROM runs ORDER BY seq")] == [
            "queued",
            "queued",
            "completed",
            "running",
        ]
