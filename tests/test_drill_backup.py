"""The backup drill: a copy of the SQLite store taken with ``closeguard store backup``
(sqlite3's online backup) while a guarded client writes audit rows and the inbox stores
events and their runs restores to a consistent state: integrity check ok, the audit chain
verifies, every event's run is in the copy, and a store opened on it keeps working."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import AuditLog, Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.workflows.inbox import Inbox
from tests._hooks import lead_created_flow
from tests._pg import ADMIN_URL

EVENTS = 50
"""Events written before the backup starts; the writer goes on until it has ended."""
MOST = 5000


def _backup(source: Path, folder: Path) -> str:
    env = {"CLOSEGUARD_STORE_URL": f"sqlite:///{source}"}
    result = CliRunner().invoke(app, ["store", "backup", str(folder)], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


async def test_a_backup_taken_while_in_use_restores_consistent(tmp_path: Path) -> None:
    source, folder = tmp_path / "live" / "store.db", tmp_path / "backup"
    source.parent.mkdir()
    copy = folder / "store.db"
    store = Store(f"sqlite:///{source}")
    sim = Simulator(seed=4, leads=1)
    inbox = Inbox(store, [lead_created_flow()])
    guarded = Guarded(
        Policy.from_dict({"name": "backup", "grants": {"lead": "write"}}), store=store
    )
    added = 0
    backed_up = asyncio.Event()

    async def write() -> None:
        nonlocal added
        async with sim.client(policy=guarded, actor="drill") as client:
            for i in range(MOST):
                lead = await client.post("/lead/", json={"name": f"Backup {i}"})
                event = {"id": f"ev_b{i}", "object_type": "lead", "action": "created"}
                await inbox.add({**event, "lead_id": lead["id"], "data": lead}, source="drill")
                added += 1
                if backed_up.is_set() and added >= during + 5:
                    return

    during = MOST
    writer = asyncio.create_task(write())
    for _ in range(3000):
        if added >= EVENTS or writer.done():
            break
        await asyncio.sleep(0.005)
    started = added
    printed = await asyncio.to_thread(_backup, source, folder)
    during = added
    backed_up.set()
    assert "integrity ok" in printed and "verifies" in printed
    await writer
    assert 0 < started and during < added, "the writes went on while the backup was taken"

    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        events = {r[0] for r in conn.execute("SELECT event_id FROM inbox")}
        runs = {r[0] for r in conn.execute("SELECT trigger_key FROM runs")}
    assert started <= len(events) <= during
    assert len(runs) == len(events) and all(any(e in k for k in runs) for e in events)
    restored = Store(f"sqlite:///{copy}")
    try:
        report = AuditLog(restored).verify()
        assert report.ok, report.problems
        whole = AuditLog(store).verify()
        assert whole.ok and whole.rows == added and report.rows <= whole.rows
        again = Inbox(restored, [lead_created_flow()])
        assert not await again.add(
            {"id": "ev_b0", "object_type": "lead", "action": "created"}, source="drill"
        )
        assert await again.add(
            {"id": "ev_new", "object_type": "lead", "action": "created", "lead_id": "lead_x"},
            source="drill",
        )
    finally:
        restored.dispose()
        store.dispose()


def test_backup_refuses_a_used_folder_a_missing_store_and_postgresql(tmp_path: Path) -> None:
    runner = CliRunner()
    source = tmp_path / "store.db"
    Store(f"sqlite:///{source}").dispose()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    env = {"CLOSEGUARD_STORE_URL": f"sqlite:///{source}"}
    refused = runner.invoke(app, ["store", "backup", str(used)], env=env)
    assert refused.exit_code == 1 and "not an empty folder" in refused.stderr
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    env = {"CLOSEGUARD_STORE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    missing = runner.invoke(app, ["store", "backup", str(tmp_path / "b1")], env=env)
    assert missing.exit_code == 1 and not (tmp_path / "none.db").exists()
    assert "Traceback" not in missing.output + missing.stderr
    env = {"CLOSEGUARD_STORE_URL": ADMIN_URL}
    pg = runner.invoke(app, ["store", "backup", str(tmp_path / "b2")], env=env)
    assert pg.exit_code == 1 and "pg_dump" in pg.stderr
