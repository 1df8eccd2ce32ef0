"""Prune benchmark (run by hand: ``.venv/bin/python bench/prune.py [rows] [sqlite|postgresql]``).

Builds a store with ``rows`` audit rows (default 1,000,000) older than the cutoff plus a
thousand recent ones, 5,000 finished runs with a journal entry each and 5,000 old inbox
rows, written in bulk through the store's audit insert path (chained as the guard chains
them, not through the guard). Then times ``closeguard store prune``'s work,
``workflows.retention.prune``: runs, journal, inbox, and the audit rows archived to a
JSON-lines file (written, synced, renamed), the anchor appended, the rows deleted in
batches. Target: <= 60 s for 1,000,000 audit rows on SQLite and on PostgreSQL. After the
timed region the chain and the archive are verified (untimed), so a fast but wrong prune
fails. PostgreSQL is ``CLOSEGUARD_TEST_PG_URL`` (default the local ``test`` database), in
a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from closeguard.guardrails import AuditLog
from closeguard.guardrails.archive import verify_archive
from closeguard.guardrails.audit import _chain, _recorded
from closeguard.store import Store
from closeguard.store.audit import AuditRows
from closeguard.workflows.retention import prune

TARGET_S = 60.0
BATCH = 50_000
PG_URL = os.environ.get("CLOSEGUARD_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=90)
OLD = (NOW - timedelta(days=200)).timestamp()


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="microseconds")


def _row(i: int, ts: str) -> list[Any]:
    entry = {
        "actor": "bench",
        "run_id": f"run_{i % 5000}",
        "call_id": f"c{i}",
        "attempt": 1,
        "policy": "bench",
        "endpoint": "lead.get",
        "method": "GET",
        "path": f"/lead/lead_{i % 997}/",
        "access": "read",
        "decision": "allow",
        "rule": "grants.lead",
        "reason": None,
        "args": '{"params":{}}',
        "status_code": 200,
        "latency_us": 1200,
        "error": None,
        "approval_id": None,
    }
    return [ts, *_recorded(entry)]


def fill(store: Store, rows: int) -> None:
    """``rows`` old audit rows and 1,000 recent ones, chained; old runs, journal, inbox."""
    audit = AuditRows(store)
    recent = _iso(NOW.timestamp() - 60)
    done = 0
    while done < rows + 1000:
        n = min(BATCH, rows + 1000 - done)
        queued: list[Any] = []
        for i in range(done, done + n):
            queued.extend(_row(i, _iso(OLD + i / 1000) if i < rows else recent))
        audit.append(queued, _chain)
        done += n
    t = store.tables
    runs = [
        {
            "id": f"run_{i}",
            "workflow": "bench",
            "trigger_key": f"event:ev_{i}",
            "kind": "event",
            "lead_id": f"lead_{i % 997}",
            "payload": json.dumps({"event": {"id": f"ev_{i}"}}),
            "status": "completed",
            "attempts": 1,
            "available_at": OLD,
            "created": OLD,
            "updated": OLD,
        }
        for i in range(5000)
    ]
    effects = [
        {"run_id": f"run_{i}", "key": "task", "status": "done", "result": "{}", "created": OLD}
        | {"updated": OLD}
        for i in range(5000)
    ]
    inbox = [
        {
            "event_id": f"ev_{i}",
            "source": "webhook",
            "received": OLD,
            "payload": "{}",
            "dispatched": True,
        }
        for i in range(5000)
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(t.runs), runs)
        conn.execute(insert(t.effects), effects)
        conn.execute(insert(t.inbox), inbox)


def bench(name: str, store: Store, rows: int, folder: Path) -> bool:
    started = time.perf_counter()
    fill(store, rows)
    built = time.perf_counter() - started
    print(f"{name}: built {rows:,} old audit rows (+1,000 recent) in {built:.1f} s")
    load = os.getloadavg()[0]
    report = prune(store, CUTOFF, archive_dir=folder, checkpoints=folder / "none.db")
    seconds = report.seconds
    log = AuditLog(store)
    chain = log.verify()
    archive = verify_archive([Path(str(report.archive))], log)
    right = (
        report.audit_rows == rows
        and report.runs == 5000
        and report.inbox == 5000
        and chain.ok
        and chain.rows == 1001
        and archive.ok
        and archive.rows == rows
    )
    ok = right and seconds <= TARGET_S
    size = Path(str(report.archive)).stat().st_size / 1e6
    print(
        f"{name}: prune of {rows:,} audit rows (archive {size:.0f} MB), 5,000 runs, 5,000 "
        f"inbox rows: {seconds:.1f} s (target <= {TARGET_S:.0f} s) "
        f"{'PASS' if ok else 'FAIL'}; load {load:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end; verify: chain {chain.ok} ({chain.rows} rows left), "
        f"archive {archive.ok} ({archive.rows:,} rows, linked by {archive.linked})"
    )
    return ok


def on_sqlite(rows: int) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'store.db'}")
        try:
            return bench("sqlite", store, rows, Path(tmp) / "archive")
        finally:
            store.dispose()


def on_postgresql(rows: int) -> bool:
    schema = f"bench_prune_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    store = Store(PG_URL, schema=schema)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return bench("postgresql", store, rows, Path(tmp) / "archive")
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    which = sys.argv[2:] or ["sqlite", "postgresql"]
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    results = []
    if "sqlite" in which:
        results.append(on_sqlite(rows))
    if "postgresql" in which:
        results.append(on_postgresql(rows))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
