"""WAL checkpoints of SQLite files on one thread of their own, not in whoever commits.

In WAL mode SQLite copies the log back into the database (a *checkpoint*) from inside the
commit that takes the log past ``wal_autocheckpoint`` pages (1000 by default), and that
copy ends with an fsync of the database: measured on the 2-core machine, LangGraph's
checkpointer committed in a median 31 us, but one commit in a hundred took 2-19 ms, and
those held 80 % of all commit time (0.6 ms per agent tool call), every one of them on the
event loop; the store's audit flushes spent half their commit time there. A
``WalCheckpoints`` handle keeps the committing connections' automatic checkpoint as a
far-off safety net (``SAFETY_NET_PAGES``, set by ``hand_over``) and has one process-wide
daemon thread run ``PRAGMA wal_checkpoint(PASSIVE)`` on a connection of its own once the
file's log has grown past ``pages`` and changed since its last checkpoint. A passive
checkpoint never waits for, nor blocks, a reader or a writer, and SQLite lets the GIL go
while it copies and syncs. Nothing is less durable: a committed transaction is in the log
until it is copied, and a crash replays the log as before.

One thread serves every file (a process may open hundreds of stores: the test suite
does); it starts with the first handle and ends with the last one's ``close``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["SAFETY_NET_PAGES", "THREAD_NAME", "WalCheckpoints", "watched"]

SAFETY_NET_PAGES = 20_000
"""The committing connections' own ``wal_autocheckpoint``: reached only if the thread falls
far behind (80 MB of log at 4 KiB pages)."""
THREAD_NAME = "closeguard-wal-checkpoints"


class WalCheckpoints:
    """Checkpoint ``path``'s WAL on the shared thread every ``interval`` seconds once the
    log holds more than ``pages`` pages (counted as 4 KiB, SQLite's default page size, from
    the log file's length) and was written since the last checkpoint; ``close`` stops it.
    Give the committing connections ``PRAGMA wal_autocheckpoint`` = ``SAFETY_NET_PAGES``
    (``hand_over``)."""

    def __init__(self, path: Path, *, pages: int = 1000, interval: float = 0.25) -> None:
        self.path = Path(path)
        self.wal = Path(f"{self.path}-wal")
        self.interval = interval
        self.threshold = pages * 4096
        self.checkpoints = 0
        """Checkpoints run for this file (tests, benches)."""
        self.due_at = time.monotonic() + interval
        self._seen = -1
        self._conn: sqlite3.Connection | None = None
        self._inode = -1
        self.closed = False
        self._lock = threading.RLock()
        _thread.add(self)

    @staticmethod
    def hand_over(conn: Any) -> None:
        """Leave ``conn``'s commits only the safety net's checkpoints (a DBAPI connection:
        ``sqlite3``'s, or SQLAlchemy's pooled wrapper of one)."""
        conn.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")

    def _due(self) -> bool:
        try:
            stat = os.stat(self.wal)
        except OSError:
            return False
        # After a full checkpoint SQLite writes the log again from its start without
        # shrinking the file: the length alone would call for a checkpoint on every turn.
        return stat.st_size > self.threshold and stat.st_mtime_ns != self._seen

    def _turn(self) -> None:
        """On the thread: one checkpoint if due. One that cannot run now (the file gone,
        another checkpoint on it) is left to the next turn, or to the committing
        connections' own."""
        with self._lock:
            if self.closed or not self._due():
                return
            with contextlib.suppress(sqlite3.Error, OSError):
                inode = os.stat(self.path).st_ino
                if self._conn is not None and inode != self._inode:
                    # The file was replaced (a reset, a restore): checkpoint the new one.
                    self._conn.close()
                    self._conn = None
                if self._conn is None:
                    self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
                    self._conn.execute("PRAGMA busy_timeout=1000")
                    self._inode = inode
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._seen = os.stat(self.wal).st_mtime_ns
                self.checkpoints += 1

    def close(self) -> None:
        """Stop checkpointing this file; a checkpoint under way finishes first."""
        if self.closed:
            return
        self.closed = True
        _thread.remove(self)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _Thread:
    """The one thread and the files it serves. Locks are reentrant: a handle's ``close``
    may run from a finalizer that the garbage collector calls on this very thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.files: list[WalCheckpoints] = []
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, handle: WalCheckpoints) -> None:
        with self.lock:
            self.files.append(handle)
            if self.thread is None:
                self.wake.clear()
                self.thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                self.thread.start()
            else:
                self.wake.set()

    def remove(self, handle: WalCheckpoints) -> None:
        with self.lock:
            with contextlib.suppress(ValueError):
                self.files.remove(handle)
            ending = self.thread if not self.files else None
            if ending is not None:
                self.thread = None
                self.wake.set()
        if ending is not None and ending is not threading.current_thread():
            ending.join()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self.lock:
                if self.thread is not me:
                    return
                files = list(self.files)
                self.wake.clear()
            now = time.monotonic()
            for handle in files:
                if handle.due_at <= now:
                    handle.due_at = now + handle.interval
                    handle._turn()
            wait = min((h.due_at for h in files), default=now) - time.monotonic()
            self.wake.wait(max(wait, 0.0))


_thread = _Thread()


def _forked() -> None:
    """In a forked child the thread is gone and the parent's files are not its own (SQLite
    connections do not cross a fork): serve only the handles the child opens."""
    global _thread
    inherited, _thread = _thread, _Thread()
    for handle in inherited.files:
        handle.closed = True
        handle._conn = None  # not closed: its locks and file are the parent's


os.register_at_fork(after_in_child=_forked)


def watched() -> tuple[Path, ...]:
    """The files whose checkpoints the thread runs now, one entry per open handle."""
    with _thread.lock:
        return tuple(h.path for h in _thread.files)
