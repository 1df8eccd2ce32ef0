"""``store.walcheck``: a SQLite file's WAL is copied back by a thread of its own, so the
connection that commits (LangGraph's checkpointer, on the event loop) never does it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from closeguard.agent.runtime import open_checkpointer
from closeguard.store.walcheck import SAFETY_NET_PAGES, WalCheckpoints


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB)")
    return conn


def _fill(conn: sqlite3.Connection, transactions: int) -> None:
    for i in range(transactions):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO blobs (data) VALUES (?)", (bytes([i % 256]) * 40_000,))
        conn.execute("COMMIT")


def _until(check: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_committing_connection_leaves_checkpoints_to_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = _writer(path)
    WalCheckpoints.hand_over(conn)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_NET_PAGES
    before = path.stat().st_size
    # ~1,200 pages of log: past SQLite's default 1,000, under the safety net, so the
    # connection's own commits copy nothing back
    _fill(conn, 120)
    assert path.stat().st_size == before
    checkpoints = WalCheckpoints(path, pages=50, interval=0.01)
    try:
        assert _until(lambda: checkpoints.checkpoints >= 1)
        assert _until(lambda: path.stat().st_size > 120 * 40_000)  # copied into the file
    finally:
        checkpoints.close()
    assert not any(t.name.startswith("wal-checkpoints") for t in threading.enumerate())
    conn.close()
    reopened = sqlite3.connect(str(path))
    assert reopened.execute("SELECT count(*) FROM blobs").fetchone()[0] == 120
    reopened.close()


def test_a_small_log_is_left_alone_and_a_missing_file_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = _writer(path)
    _fill(conn, 1)
    checkpoints = WalCheckpoints(path, pages=1000, interval=0.01)
    missing = WalCheckpoints(tmp_path / "nowhere" / "x.db", pages=0, interval=0.01)
    time.sleep(0.1)
    checkpoints.close()
    missing.close()
    assert checkpoints.checkpoints == 0 and missing.checkpoints == 0
    conn.close()


async def test_the_agents_checkpointer_hands_its_checkpoints_over(tmp_path: Path) -> None:
    async with open_checkpointer(tmp_path / "checkpoints.db") as saver:
        assert saver.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SAFETY_NET_PAGES
        assert any(t.name == "wal-checkpoints:checkpoints.db" for t in threading.enumerate())
    assert not any(t.name.startswith("wal-checkpoints") for t in threading.enumerate())
