"""``store.walcheck``: a SQLite file's WAL is copied back by a thread of its own, so the
connections that commit (LangGraph's checkpointer and the store, on the event loop or the
store's thread) never do it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from closeguard.agent.runtime import open_checkpointer
from closeguard.guardrails.audit import EMPTY_ROW, AuditLog
from closeguard.store import Store
from closeguard.store.walcheck import SAFETY_NET_PAGES, WalCheckpoints, watched
from closeguard.tools.errors import StoreError


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


def _handed_over(path: Path, transactions: int) -> sqlite3.Connection:
    """A committing connection that leaves checkpoints to the thread, after
    ``transactions`` commits of 40 KB (10 pages each)."""
    conn = _writer(path)
    WalCheckpoints.hand_over(conn)
    _fill(conn, transactions)
    return conn


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
    assert path not in watched()
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
        assert tmp_path / "checkpoints.db" in watched()
    assert tmp_path / "checkpoints.db" not in watched()


def test_an_idle_log_is_not_checkpointed_again(tmp_path: Path) -> None:
    """After a full checkpoint SQLite reuses the log from its start without shrinking the
    file: a long log nobody wrote since the last checkpoint is left alone."""
    path = tmp_path / "c.db"
    conn = _handed_over(path, 30)
    checkpoints = WalCheckpoints(path, pages=50, interval=0.01)
    try:
        assert _until(lambda: checkpoints.checkpoints >= 1)
        time.sleep(0.2)  # twenty turns
        assert checkpoints.checkpoints == 1
        _fill(conn, 1)  # written again: the file is long, so due again
        assert _until(lambda: checkpoints.checkpoints == 2)
    finally:
        checkpoints.close()
        conn.close()


def test_one_thread_serves_every_file_and_ends_with_the_last(tmp_path: Path) -> None:
    """In a fresh interpreter (this one's stores keep the thread alive)."""
    script = textwrap.dedent(
        f"""
        import threading
        from pathlib import Path
        from closeguard.store.walcheck import THREAD_NAME, WalCheckpoints, watched

        def threads():
            return [t for t in threading.enumerate() if t.name == THREAD_NAME]

        handles = [WalCheckpoints(Path({str(tmp_path)!r}) / f"{{i}}.db") for i in range(5)]
        assert len(threads()) == 1, threads()
        assert len(watched()) == 5
        for h in handles[:4]:
            h.close()
        assert len(threads()) == 1 and len(watched()) == 1
        handles[4].close()
        handles[4].close()
        assert threads() == [] and watched() == ()
        again = WalCheckpoints(Path({str(tmp_path)!r}) / "again.db")
        assert len(threads()) == 1
        again.close()
        assert threads() == []
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_stores_commits_leave_checkpoints_to_the_thread(tmp_path: Path) -> None:
    """A store on a SQLite file hands its connections' checkpoints over, the thread copies
    its audit log's rows back, and ``dispose`` stops it."""
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    assert store.checkpoints is not None and path in watched()
    store.checkpoints.interval = 0.01
    with store.engine.connect() as conn:
        pragma = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert pragma == SAFETY_NET_PAGES
    store.checkpoints.threshold = 10**12  # nothing due while the rows go in
    log = AuditLog(store)
    row = {**EMPTY_ROW, "actor": "t", "method": "GET", "path": "/lead/", "decision": "allow"}
    for i in range(2_000):
        log.append({**row, "args": {"n": i, "pad": "x" * 2_000}})
    log.flush()
    before = path.stat().st_size
    wal = Path(f"{path}-wal").stat().st_size
    assert wal > 1_000 * 4096  # past SQLite's own threshold: its commits would have copied
    store.checkpoints.threshold = 0
    assert _until(lambda: store.checkpoints is not None and store.checkpoints.checkpoints >= 1)
    assert _until(lambda: path.stat().st_size > before + 2_000 * 2_000)
    assert log.verify().ok and log.verify().rows == 2_000
    store.dispose()
    assert path not in watched()


def test_stores_in_memory_have_no_checkpoints() -> None:
    store = Store("sqlite://")
    assert store.checkpoints is None
    store.dispose()


def test_a_store_that_cannot_open_leaves_no_file_watched(tmp_path: Path) -> None:
    """Not even while its error (and so the half-made store) is still held."""
    path = tmp_path / "none.db"
    with pytest.raises(StoreError) as failed:
        Store(f"sqlite:///{path}", create=False)
    assert path not in watched()
    assert "does not exist" in str(failed.value)


def test_a_forked_child_serves_only_the_files_it_opens(tmp_path: Path) -> None:
    parent = WalCheckpoints(tmp_path / "parent.db")
    path = tmp_path / "child.db"
    pid = os.fork()
    if pid == 0:  # the child: no assertion may raise past os._exit
        code = 1
        try:
            inherited = watched() == ()
            conn = _handed_over(path, 30)
            mine = WalCheckpoints(path, pages=50, interval=0.01)
            served = _until(lambda: mine.checkpoints >= 1)
            mine.close()
            conn.close()
            parent.close()
            code = 0 if inherited and served and watched() == () else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert tmp_path / "parent.db" in watched()
    finally:
        parent.close()


def test_a_replaced_file_is_checkpointed_anew(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = _handed_over(path, 30)
    checkpoints = WalCheckpoints(path, pages=50, interval=0.01)
    try:
        assert _until(lambda: checkpoints.checkpoints >= 1)
        conn.close()
        for leftover in tmp_path.glob("c.db*"):
            leftover.unlink()
        conn = _handed_over(path, 30)
        assert _until(lambda: checkpoints.checkpoints >= 2)
        assert _until(lambda: path.stat().st_size > 30 * 40_000)  # the new file got its rows
    finally:
        checkpoints.close()
        conn.close()
