"""A read-only view of a SQLite store on the standard library's ``sqlite3``.

The command line's read commands (``approvals list``, ``audit tail``/``verify``, ``runs
list``, ...) start in a fraction of their time when they do not import SQLAlchemy (~120 ms
of a start that must stay under 0.3 s). ``open_reader`` gives a ``Reader`` only when that is
safe: the URL is a plain SQLite file (``sqlite:///PATH``, nothing after it) that exists, is
at the newest schema revision and holds the tables read. Anything else (PostgreSQL, an
older store that opening would migrate, a file that is not a store) gets ``None``, and the
caller takes the ``Store`` path, which migrates or explains. The reader writes nothing and
runs the same queries as the table groups' read methods (a test compares them row by row).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from closeguard.store.migrations import VERSION_TABLE, head
from closeguard.store.records import (
    APPROVAL_COLUMNS,
    AUDIT_COLUMNS,
    EFFECT_COLUMNS,
    GENESIS,
    RUN_COLUMNS,
)

__all__ = ["AuditReader", "Reader", "connect", "open_reader", "sqlite_path"]

_TABLES = frozenset({"audit", "audit_head", "approvals", "runs", "effects", VERSION_TABLE})
_BUSY_TIMEOUT_S = 10.0
"""As long as the ``Store`` waits for a writer's lock."""
_AUDIT = ", ".join(AUDIT_COLUMNS)
_APPROVALS = ", ".join(APPROVAL_COLUMNS)
_RUNS = ", ".join(RUN_COLUMNS)
_EFFECTS = ", ".join(EFFECT_COLUMNS)

Row = dict[str, Any]


def _where(*terms: tuple[str, Sequence[Any]] | None) -> tuple[str, list[Any]]:
    """``WHERE a AND b `` of the terms given (None: left out, none: ``""``), and their
    parameters in order."""
    given = [t for t in terms if t is not None]
    clause = f"WHERE {' AND '.join(sql for sql, _ in given)} " if given else ""
    return clause, [p for _, values in given for p in values]


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL, else None (another database, a driver
    or options named, an in-memory database, or escapes this reader does not decode)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :]
    if not path or path == ":memory:" or any(c in path for c in "?#%"):
        return None
    return Path(path).expanduser()


def open_reader(url: str) -> Reader | None:
    """A ``Reader`` of the store at ``url`` if it can be read as is (see the module), else
    None: the caller opens the ``Store`` instead."""
    conn = connect(url)
    return None if conn is None else Reader(conn)


def connect(url: str, tables: frozenset[str] = _TABLES) -> sqlite3.Connection | None:
    """A ``sqlite3`` connection (autocommit: transactions are begun explicitly) to the
    plain SQLite file of ``url`` if it holds ``tables`` at the newest revision, else None."""
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(
            path.resolve().as_uri() + "?mode=rw",
            uri=True,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error:
        return None
    try:
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = (
            conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
            if tables | {VERSION_TABLE} <= found
            else []
        )
    except sqlite3.Error:
        version = []
    if [r[0] for r in version] != [head()]:
        conn.close()
        return None
    return conn


class Reader:
    """Queries on one read-only ``sqlite3`` connection; ``close`` it when done."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.audit = AuditReader(self)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every query inside reads the store as of one moment (one read transaction), so
        rows a writer commits meanwhile do not show up half-way."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """The rows of ``sql`` as mappings of their column names."""
        cursor = self.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of ``sql``, if any."""
        found = self.rows(sql, params)
        return found[0] if found else None

    # -- approvals: as ``ApprovalRows`` and ``Approvals.list`` read them -------------------

    def approval(self, approval_id: str) -> Row | None:
        return self.one(f"SELECT {_APPROVALS} FROM approvals WHERE id = ?", (approval_id,))

    def approvals_due(self, now: float) -> bool:
        """Whether a pending request is past its expiry at ``now`` (``Approvals.expire``
        would record it: a write, which this reader leaves to the ``Store`` path)."""
        sql = "SELECT 1 FROM approvals WHERE status = 'pending' AND expires <= ? LIMIT 1"
        return self.conn.execute(sql, (now,)).fetchone() is not None

    def approvals(self, status: str | None, now: float, *, limit: int) -> list[Row]:
        """Newest first; ``status`` is the effective one at ``now`` (``Approvals.list``):
        a pending or approved request past its expiry is ``expired``."""
        where = ""
        params: list[Any] = []
        if status in ("pending", "approved"):
            where, params = "WHERE status = ? AND expires > ?", [status, now]
        elif status == "expired":
            where = (
                "WHERE (status IN ('pending', 'approved') AND expires <= ?) OR status = 'expired'"
            )
            params = [now]
        elif status is not None:
            where, params = "WHERE status = ?", [status]
        sql = f"SELECT {_APPROVALS} FROM approvals {where} ORDER BY created DESC LIMIT ?"
        return self.rows(sql, (*params, limit))

    # -- runs: as ``RunRows`` and ``EffectRows`` read them -----------------------------------

    def run(self, run_id: str) -> Row | None:
        return self.one(f"SELECT {_RUNS} FROM runs WHERE id = ?", (run_id,))

    def runs_with_prefix(self, prefix: str, *, limit: int = 5) -> list[Row]:
        """Runs whose id starts with ``prefix`` (``RunRows.find``, for ids typed by hand)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        sql = f"SELECT {_RUNS} FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT ?"
        return self.rows(sql, (pattern, limit))

    def effects(self, run_id: str) -> list[Row]:
        """A run's effect journal, oldest first (``EffectRows.for_run``; ``result`` as the
        stored JSON text)."""
        sql = f"SELECT {_EFFECTS} FROM effects WHERE run_id = ? ORDER BY created"
        return self.rows(sql, (run_id,))

    def runs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
    ) -> list[Row]:
        """Newest first (``RunRows.list``)."""
        statuses = (status,) if isinstance(status, str) else status
        marks = "?" * len(statuses or ())
        clause, params = _where(
            None if statuses is None else (f"status IN ({', '.join(marks)})", statuses),
            None if workflow is None else ("workflow = ?", (workflow,)),
        )
        sql = f"SELECT {_RUNS} FROM runs {clause}ORDER BY seq DESC LIMIT ?"
        return self.rows(sql, (*params, limit))


class AuditReader:
    """The audit log's reads, as ``AuditRows`` makes them (and ``chain.verify`` walks)."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row written, ``(0, GENESIS)`` before the first."""
        row = self._reader.conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def tail(self, n: int = 20) -> list[Row]:
        """The last ``n`` rows, oldest first."""
        rows = self._reader.rows(f"SELECT {_AUDIT} FROM audit ORDER BY seq DESC LIMIT ?", (n,))
        return rows[::-1]

    def get(self, seq: int) -> Row | None:
        return self._reader.one(f"SELECT {_AUDIT} FROM audit WHERE seq = ?", (seq,))

    def rows(
        self, *, chunk: int = 1000, start: int | None = None, stop: int | None = None
    ) -> Iterator[Row]:
        """Every row in ``seq`` order (only ``start`` to ``stop``, both included, when
        given), read ``chunk`` rows per query."""
        after = None if start is None else start - 1
        return self._pages(chunk, after, None if stop is None else ("seq <= ?", (stop,)))

    def matching(
        self,
        *,
        policy: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        chunk: int = 1000,
    ) -> Iterator[Row]:
        """The rows of ``policy`` and/or ``actor`` from ``since`` (compared as the stored
        text), in ``seq`` order, ``chunk`` rows per query."""
        return self._pages(
            chunk,
            0,
            None if policy is None else ("policy = ?", (policy,)),
            None if actor is None else ("actor = ?", (actor,)),
            None if since is None else ("ts >= ?", (since,)),
        )

    def _pages(
        self, chunk: int, after: int | None, *terms: tuple[str, Sequence[Any]] | None
    ) -> Iterator[Row]:
        """The rows after ``seq`` ``after`` (None: from the first) that match ``terms``, in
        ``seq`` order, ``chunk`` rows per query."""
        last = after
        while True:
            clause, params = _where(None if last is None else ("seq > ?", (last,)), *terms)
            sql = f"SELECT {_AUDIT} FROM audit {clause}ORDER BY seq LIMIT ?"
            batch = self._reader.rows(sql, (*params, chunk))
            if not batch:
                return
            yield from batch
            last = batch[-1]["seq"]

    def for_run(self, run_id: str) -> list[Row]:
        """The rows of one run, in order."""
        return self._reader.rows(
            f"SELECT {_AUDIT} FROM audit WHERE run_id = ? ORDER BY seq", (run_id,)
        )

    def with_decision(self, decision: str) -> list[Row]:
        """The rows whose ``decision`` is ``decision``, oldest first."""
        sql = f"SELECT {_AUDIT} FROM audit WHERE decision = ? ORDER BY seq"
        return self._reader.rows(sql, (decision,))
