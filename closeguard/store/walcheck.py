"""WAL checkpoints of a SQLite file on a thread of their own, not in whoever commits.

In WAL mode SQLite copies the log back into the database (a *checkpoint*) from inside the
commit that takes the log past ``wal_autocheckpoint`` pages (1000 by default), and that
copy ends with an fsync of the database: measured on the 2-core machine, LangGraph's
checkpointer committed in a median 31 us, but one commit in a hundred took 2-19 ms, and
those held 80 % of all commit time (0.6 ms per agent tool call), every one of them on the
event loop. ``WalCheckpoints`` keeps the committing connection's automatic checkpoint as a
far-off safety net (``SAFETY_NET_PAGES``) and runs ``PRAGMA wal_checkpoint(PASSIVE)`` on
its own connection and thread, once the log has grown past ``pages``; a passive
checkpoint never waits for, nor blocks, a reader or a writer, and SQLite lets the GIL go
while it copies and syncs. Nothing is less durable: a committed transaction is in the log
until it is copied, and a crash replays the log as before.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path

__all__ = ["SAFETY_NET_PAGES", "WalCheckpoints"]

SAFETY_NET_PAGES = 20_000
"""The committing connection's own ``wal_autocheckpoint``: reached only if this thread
falls far behind (80 MB of log at 4 KiB pages)."""


class WalCheckpoints:
    """Checkpoint ``path``'s WAL from a daemon thread every ``interval`` seconds once the log
    holds more than ``pages`` pages (counted as 4 KiB, SQLite's default page size, from the
    log file's length); ``close`` stops it. Give the committing connection
    ``PRAGMA wal_autocheckpoint`` = ``SAFETY_NET_PAGES`` (``hand_over``)."""

    def __init__(self, path: Path, *, pages: int = 1000, interval: float = 0.25) -> None:
        self.path = Path(path)
        self.wal = Path(f"{self.path}-wal")
        self.interval = interval
        self.threshold = pages * 4096
        self.checkpoints = 0
        """Checkpoints this thread ran (tests, benches)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"wal-checkpoints:{self.path.name}", daemon=True
        )
        self._thread.start()

    @staticmethod
    def hand_over(conn: sqlite3.Connection) -> None:
        """Leave ``conn``'s commits only the safety net's checkpoints."""
        conn.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")

    def _due(self) -> bool:
        try:
            return os.stat(self.wal).st_size > self.threshold
        except OSError:
            return False

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval):
                if not self._due():
                    continue
                # A checkpoint that cannot run now (the file gone, another checkpoint on
                # it) is left to the next turn, or to the committing connection's own.
                with contextlib.suppress(sqlite3.Error):
                    if conn is None:
                        conn = sqlite3.connect(str(self.path), check_same_thread=False)
                        conn.execute("PRAGMA busy_timeout=1000")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
