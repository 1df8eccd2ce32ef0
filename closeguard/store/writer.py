"""Decisions on a current SQLite store through the standard library's ``sqlite3``.

``closeguard approvals approve``/``reject`` and ``runs retry`` change a few rows (an
approval and one audit row chained after the head, a run put back in its queue); importing
SQLAlchemy for that would be most of their time. ``open_writer`` gives a ``Writer`` on the
same terms as ``open_reader`` (a plain SQLite file at the newest revision, else None: the
caller opens the ``Store``). Its three storages, ``approval_rows``, ``users`` and ``audit``,
and ``requeue`` run the statements of the table groups ``ApprovalRows``, ``UserRows``,
``AuditRows`` and ``RunRows`` as SQL text (the audit append is the very same code,
``auditsql.append_rows``), each change in one transaction begun ``IMMEDIATE`` (it waits
for another writer, up to the ``Store``'s busy timeout). A test runs every method on both
and compares the stored rows.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from closeguard.store.auditsql import Chain, Statements, append_rows
from closeguard.store.reader import AuditReader, Reader, Row, connect
from closeguard.store.records import APPROVAL_COLUMNS, USER_COLUMNS, ApprovalMoves

__all__ = ["ApprovalWriter", "AuditWriter", "UserWriter", "Writer", "open_writer"]

_WRITTEN = frozenset({"audit", "audit_head", "approvals", "users", "runs", "effects"})
_APPROVALS = ", ".join(APPROVAL_COLUMNS)
_USERS = ", ".join(USER_COLUMNS)
_LIVE = (
    f"SELECT {_APPROVALS} FROM approvals WHERE call_hash = ? AND status = ? "
    "AND expires > ? ORDER BY created LIMIT 1"
)
"""The oldest unexpired approval of a call in a status (``ApprovalRows._live``)."""


def _insert(cursor: sqlite3.Cursor, table: str, values: Mapping[str, Any]) -> None:
    names = list(values)
    marks = ", ".join("?" * len(names))
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", [values[n] for n in names]
    )


def _assign(values: Mapping[str, Any]) -> str:
    """``a = ?, b = ?`` for an ``UPDATE`` of ``values`` (bound in their order)."""
    return ", ".join(f"{name} = ?" for name in values)


def open_writer(url: str) -> Writer | None:
    """A ``Writer`` of the store at ``url`` if it can be written as is, else None."""
    conn = connect(url, _WRITTEN)
    if conn is None:
        return None
    conn.execute("PRAGMA synchronous=NORMAL")
    return Writer(conn)


class Writer(Reader):
    """A ``Reader`` that also decides approvals, keeps accounts and appends audit rows."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self.audit: AuditWriter = AuditWriter(self)
        self.approval_rows = ApprovalWriter(self)
        self.users = UserWriter(self)

    def __repr__(self) -> str:
        names = [r[2] for r in self.conn.execute("PRAGMA database_list") if r[1] == "main"]
        return f"Writer('sqlite:///{names[0] if names else '?'}')"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A cursor in one write transaction: committed when the block ends, rolled back
        if it raises."""
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            self.conn.rollback()
            raise
        else:
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    def requeue(self, run_id: str, from_statuses: Sequence[str], now: float, **values: Any) -> bool:
        """``RunRows.requeue``: the run back to ``queued`` now, keeping its place (``seq``) in
        its lead's order, if its status is one of ``from_statuses``. A SQLite store has no
        job engine, so its hook (``_requeued``) has nothing to do."""
        sets = {
            "status": "queued",
            "available_at": now,
            "lease_until": None,
            "worker": None,
            "updated": now,
            **values,
        }
        marks = ", ".join("?" * len(from_statuses))
        with self.transaction() as cursor:
            cursor.execute(
                f"UPDATE runs SET {_assign(sets)} WHERE id = ? AND status IN ({marks})",
                (*sets.values(), run_id, *from_statuses),
            )
            return bool(cursor.rowcount)


class AuditWriter(AuditReader):
    """``AuditRows`` on the writer: the reads, and the append of ``auditsql``."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, writer: Writer) -> None:
        super().__init__(writer)
        self._writer = writer
        self._sql = Statements.sqlite()

    def __repr__(self) -> str:
        return repr(self._writer)

    def append(self, queued: list[Any], chain: Chain) -> None:
        with self._writer.transaction() as cursor:
            append_rows(cursor, self._sql, queued, chain)


class ApprovalWriter(ApprovalMoves):
    """``ApprovalRows``'s statements on the writer (see there for what each one means)."""

    def __init__(self, writer: Writer) -> None:
        self._w = writer

    def _live(self, digest: str, status: str, now: float) -> Row | None:
        return self._w.one(_LIVE, (digest, status, now))

    def open_or_insert(self, values: Mapping[str, Any], now: float) -> Row:
        with self._w.transaction() as cursor:
            found = cursor.execute(_LIVE, (values["call_hash"], "pending", now)).fetchone()
            if found is not None:
                return dict(zip(APPROVAL_COLUMNS, found, strict=True))
            _insert(cursor, "approvals", values)
        row = self.get(str(values["id"]))
        assert row is not None
        return row

    def get(self, approval_id: str) -> Row | None:
        return self._w.approval(approval_id)

    def by_status(self, status: str | None, now: float, *, limit: int) -> list[Row]:
        return self._w.approvals(status, now, limit=limit)

    def due(self, now: float, *, limit: int = 500) -> tuple[str, ...]:
        sql = (
            "SELECT id FROM approvals WHERE status = 'pending' AND expires <= ? "
            "ORDER BY expires LIMIT ?"
        )
        return tuple(str(r[0]) for r in self._w.conn.execute(sql, (now, limit)))

    def expire(self, approval_id: str, now: float) -> bool:
        with self._w.transaction() as cursor:
            cursor.execute(
                "UPDATE approvals SET status = 'expired', decided_at = ? "
                "WHERE id = ? AND status = 'pending' AND expires <= ?",
                (now, approval_id, now),
            )
            return bool(cursor.rowcount)

    def _move(self, approval_id: str, current: str, now: float, /, **values: Any) -> bool:
        with self._w.transaction() as cursor:
            cursor.execute(
                f"UPDATE approvals SET {_assign(values)} "
                "WHERE id = ? AND status = ? AND expires > ?",
                (*values.values(), approval_id, current, now),
            )
            return bool(cursor.rowcount)


class UserWriter:
    """``UserRows``'s statements on the writer (``disabled`` read back as a bool)."""

    def __init__(self, writer: Writer) -> None:
        self._w = writer

    def _rows(self, where: str, params: tuple[Any, ...]) -> list[Row]:
        rows = self._w.rows(f"SELECT {_USERS} FROM users {where}", params)
        for row in rows:
            row["disabled"] = bool(row["disabled"])
        return rows

    def insert(self, values: Mapping[str, Any]) -> bool:
        try:
            with self._w.transaction() as cursor:
                _insert(cursor, "users", values)
        except sqlite3.IntegrityError:
            return False
        return True

    def get(self, name: str) -> Row | None:
        return next(iter(self._rows("WHERE name = ?", (name,))), None)

    def by_token_id(self, token_id: str) -> Row | None:
        return next(iter(self._rows("WHERE token_id = ?", (token_id,))), None)

    def by_email(self, email: str) -> list[Row]:
        return self._rows("WHERE email = ? ORDER BY name", (email,))

    def all(self) -> list[Row]:
        return self._rows("ORDER BY name", ())

    def set(self, name: str, **values: Any) -> bool:
        with self._w.transaction() as cursor:
            cursor.execute(
                f"UPDATE users SET {_assign(values)} WHERE name = ?", (*values.values(), name)
            )
            return bool(cursor.rowcount)
