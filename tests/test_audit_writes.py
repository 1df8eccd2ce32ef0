"""How audit rows reach the store: the hash format, chunked inserts, durability, failures."""

from __future__ import annotations

import gc
import hashlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from closeguard.guardrails import AuditLog, row_hash
from closeguard.guardrails.audit import CHAINED, RECORDED, _iso
from closeguard.guardrails.redact import canonical_json
from closeguard.store import Store
from closeguard.store.auditsql import _CHUNK
from closeguard.tools.errors import StoreError

PREV = "ab" * 32
ROW: dict[str, Any] = {
    "seq": 7,
    "ts": "2026-11-27T15:47:51.742527+00:00",
    "actor": "bot",
    "run_id": "r",
    "call_id": "c7",
    "attempt": 2,
    "policy": "p",
    "endpoint": "activity.note.create",
    "method": "POST",
    "path": "/activity/note/",
    "access": "write",
    "decision": "allow",
    "rule": "grants.activity.note",
    "reason": "Grüße, “quoted”",
    "args": '{"body":{"note":"é"},"params":{}}',
    "status_code": 200,
    "latency_us": 1234,
    "error": None,
    "approval_id": None,
    "prev_hash": PREV,
}


def entry(i: int) -> dict[str, Any]:
    return {
        "method": "GET",
        "path": f"/lead/lead_{i}/",
        "decision": "allow",
        "args": {"params": {"i": i}},
        "status_code": 200,
        "latency_us": i,
    }


@pytest.mark.parametrize(
    ("latency", "digest"),
    [
        (1234, "4aaf0a27b72a9ef0aca874a0f2dca06e721a0083a25ad4c7b245123f5eeed72b"),
        (2**70, "682b1b8cacbb5de24e52e357fcbe2aa088280fd3847ff7cc844a1cab5bc89f3c"),
    ],
)
def test_row_hash_is_unchanged_and_is_the_documented_formula(latency: int, digest: str) -> None:
    """Digests computed by the previous implementation: logs written before still verify
    (2**70 takes the fallback serializer, which orjson refuses)."""
    row = {**ROW, "latency_us": latency}
    documented = hashlib.sha256(
        (PREV + canonical_json([row[k] for k in CHAINED])).encode()
    ).hexdigest()
    assert row_hash(PREV, row) == documented == digest


@pytest.mark.parametrize("odd", [{"b": 1, "a": [2, {"d": 3, "c": 4}]}, Decimal("1.5"), "ü" * 3])
def test_row_hash_matches_canonical_json_for_any_value(odd: object) -> None:
    row = {**ROW, "error": odd}
    documented = hashlib.sha256(
        (PREV + canonical_json([row[k] for k in CHAINED])).encode()
    ).hexdigest()
    assert row_hash(PREV, row) == documented


def test_one_flush_of_several_insert_chunks_chains_and_verifies(store: Store) -> None:
    log = AuditLog(store, max_delay=3600)
    n = 2 * _CHUNK + 5
    for i in range(n):
        log.append(entry(i))
    assert log.flush() == n
    log.append(entry(n))
    assert log.flush() == 1
    report = log.verify()
    assert report.ok and report.rows == report.head_seq == n + 1
    assert [r["path"] for r in log.rows()] == [f"/lead/lead_{i}/" for i in range(n + 1)]


def test_flushed_rows_survive_a_killed_process_and_the_store_is_wal_normal(
    tmp_path: Path,
) -> None:
    """WAL + synchronous=NORMAL: a flushed row is committed even if the process dies the
    next instant (kill -9, no atexit); only the unflushed batch is lost, as documented."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    script = textwrap.dedent(f"""
        import os, signal
        from closeguard.guardrails import AuditLog
        from closeguard.store import Store
        log = AuditLog(Store({url!r}), max_delay=3600)
        for i in range(25):
            log.append({{"method": "GET", "path": f"/lead/{{i}}/", "decision": "allow",
                         "args": {{}}}})
        log.flush()
        log.append({{"method": "GET", "path": "/lost/", "decision": "allow", "args": {{}}}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    store = Store(url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        report = AuditLog(store).verify()
        assert report.ok and report.rows == 25
    finally:
        store.dispose()
    with sqlite3.connect(tmp_path / "crash.db") as raw:  # a reader that is not closeguard
        assert raw.execute("SELECT count(*), max(seq) FROM audit").fetchone() == (25, 25)


def test_a_failed_flush_raises_store_error_and_keeps_its_rows(store: Store) -> None:
    log = AuditLog(store, max_delay=3600)
    log.append(entry(0))
    log.flush()
    with store.engine.begin() as conn:  # a stray row where seq 2 must go
        conn.execute(
            text(
                "INSERT INTO audit (seq, ts, method, path, decision, args, "
                "prev_hash, hash) VALUES (2, 't', 'GET', '/x/', 'allow', '{}', "
                "'p', 'h')"
            )
        )
    for i in (1, 2):
        log.append(entry(i))
    with pytest.raises(StoreError, match="2 rows kept"):
        log.flush()
    assert log.head()[0] == 1
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit WHERE seq = 2"))
    assert log.flush() == 2
    report = log.verify()
    assert report.ok and report.rows == 3


def test_record_writes_what_queue_writes(store: Store) -> None:
    """The hot path's positional rows and ``queue``'s mappings make the same rows."""
    log = AuditLog(store, max_delay=3600)
    row = {k: ROW[k] for k in RECORDED}
    log.queue({**row, "ts": ROW["ts"], "args": {"body": {"note": "é"}, "params": {}}})
    log.record(tuple(row[k] for k in RECORDED), ROW["ts"])
    log.record(tuple(row[k] for k in RECORDED))
    assert log.flush() == 3
    first, second, third = log.rows()
    assert {**first, "seq": 0, "prev_hash": "", "hash": ""} == {
        **second,
        "seq": 0,
        "prev_hash": "",
        "hash": "",
    }
    assert third["ts"] > first["ts"] and log.verify().ok


@pytest.mark.parametrize("ns", [0, 1_764_258_471_000_000_999, 1_764_258_471_999_999_999])
def test_stamps_are_formatted_as_isoformat_to_the_microsecond(ns: int) -> None:
    sec, rest = divmod(ns, 10**9)
    moment = datetime.fromtimestamp(sec, UTC).replace(microsecond=rest // 1000)
    assert _iso(ns) == moment.isoformat(timespec="microseconds")


def test_queued_rows_add_no_objects_for_the_garbage_collector(store: Store) -> None:
    """A buffer of tuples is 500 more containers for every collection to walk."""
    log = AuditLog(store, max_delay=3600)
    values = tuple(ROW[k] for k in RECORDED)
    gc.disable()
    try:
        before = len(gc.get_objects())
        for _ in range(500):
            log.record(values)
        assert len(gc.get_objects()) - before < 10
    finally:
        gc.enable()
    assert log.flush() == 500


def test_nulls_are_bound_without_a_failed_adaptation_and_stay_null(store: Store) -> None:
    log = AuditLog(store)
    log.append(entry(0), flush=True)
    adapter = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert adapter(None) is None
    with store.engine.connect() as conn:
        nulls = "SELECT error IS NULL, approval_id IS NULL, actor IS NULL FROM audit"
        assert tuple(conn.execute(text(nulls)).one()) == (1, 1, 1)
    assert log.verify().ok


def test_a_row_with_text_that_cannot_be_encoded_does_not_block_the_log(store: Store) -> None:
    log = AuditLog(store)
    log.append({**entry(0), "actor": "bad\ud800actor", "args": {"q": "x\udfff"}})
    log.append({**entry(1), "actor": "next"})
    assert log.flush() == 2
    rows = list(log.rows())
    assert [r["actor"] for r in rows] == ["bad\\ud800actor", "next"]
    assert rows[0]["args"] == '{"q":"x\\udfff"}'
    assert log.verify().ok
    log.append({**entry(2), "actor": "later"}, flush=True)
    assert [r["actor"] for r in log.rows()][-1] == "later"
