"""The audit log's append as SQL on a DBAPI cursor, with no SQLAlchemy.

Two writers append to the chain: the ``Store``'s ``AuditRows`` (any database, SQL rendered
once from its dialect) and the standard-library ``writer`` of a plain SQLite file (the
command line's decisions, which must not pay SQLAlchemy's import). Both run the same steps
here, so the locking and the order of statements that keep the chain from forking are
written once.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from closeguard.store.records import AUDIT_COLUMNS, GENESIS

__all__ = ["Chain", "Statements", "append_rows"]

_WIDTH = len(AUDIT_COLUMNS)
_CHUNK = 999 // _WIDTH
"""Rows per multi-row insert: within SQLite's oldest limit of 999 bound variables."""

Chain = Callable[[int, str, list[Any]], tuple[list[Any], int, str]]
"""``chain(seq, prev_hash, queued)``: the rows following the head, every column of each in
``AUDIT_COLUMNS`` order in one flat list, then the last row's ``seq`` and hash."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _bind_none_as_is() -> None:
    """Let the stdlib ``sqlite3`` driver bind ``None`` without raising anything.

    It "adapts" every parameter that is not an int, float, str or bytearray: for ``None``
    it finds no adapter, then looks up ``PrepareProtocol.__adapt__`` and
    ``None.__conform__``, each an ``AttributeError`` formatted and thrown away: about a
    sixth of an audit row's insert, for its usual two NULLs. An adapter handing ``None``
    back (``{}.get``, a C call) is found first and binds NULL, as before. Process-wide,
    and changes no value for any connection; an adapter someone else registered stays.
    """
    key = (type(None), sqlite3.PrepareProtocol)
    if key not in sqlite3.adapters:
        none: dict[None, None] = {}
        sqlite3.register_adapter(type(None), none.get)


def _plain(name: str) -> str:
    return name


class Statements:
    """The SQL of an append, rendered once for a driver: ``mark`` its positional parameter
    (SQLite's ``?``, psycopg's ``%s``), ``quote`` its identifier quoting, ``audit`` and
    ``head`` the two tables' names as written in SQL (schema included)."""

    def __init__(
        self,
        *,
        mark: str,
        audit: str,
        head: str,
        dialect: str,
        quote: Callable[[str], str] = _plain,
    ) -> None:
        c = quote
        one = f"WHERE {c('id')} = 1"
        self.lock = f"UPDATE {head} SET {c('seq')} = {c('seq')} {one}"
        key = zlib.crc32(f"closeguard-audit:{head}".encode())
        self.serialize = f"SELECT pg_advisory_xact_lock({key})" if dialect == "postgresql" else None
        self.head = f"SELECT {c('seq')}, {c('hash')} FROM {head} {one}"
        self.init = (
            f"INSERT INTO {head} ({c('id')}, {c('seq')}, {c('hash')}, {c('updated')}) "
            f"VALUES (1, 0, '{GENESIS}', {mark})"
        )
        self.advance = (
            f"UPDATE {head} SET {c('seq')} = {mark}, {c('hash')} = {mark}, "
            f"{c('updated')} = {mark} {one}"
        )
        self._into = f"INSERT INTO {audit} ({', '.join(c(n) for n in AUDIT_COLUMNS)}) VALUES "
        self._values = f"({', '.join([mark] * _WIDTH)})"
        self.range = (
            f"SELECT {', '.join(c(n) for n in AUDIT_COLUMNS)} FROM {audit} "
            f"WHERE {c('seq')} BETWEEN {mark} AND {mark} ORDER BY {c('seq')}"
        )
        self._sqlite = dialect == "sqlite"
        self._many: dict[int, str] = {}
        if self._sqlite:
            _bind_none_as_is()

    @classmethod
    def sqlite(cls) -> Statements:
        """As rendered for a SQLite store's tables (none of the names needs quoting there;
        a test compares the text with the dialect's)."""
        return cls(mark="?", audit="audit", head="audit_head", dialect="sqlite")

    def insert(self, cursor: Any, flat: list[Any]) -> None:
        """Insert the rows whose columns ``flat`` lists one after another: one prepared
        ``executemany``; on SQLite, multi-row ``VALUES`` of up to ``_CHUNK`` rows, about
        10 % faster (one statement step per chunk)."""
        if not self._sqlite:
            rows = [flat[i : i + _WIDTH] for i in range(0, len(flat), _WIDTH)]
            cursor.executemany(self._into + self._values, rows)
            return
        step = _CHUNK * _WIDTH
        for start in range(0, len(flat), step):
            part = flat[start : start + step]
            n = len(part) // _WIDTH
            sql = self._many.get(n)
            if sql is None:
                sql = self._many[n] = self._into + ", ".join([self._values] * n)
            cursor.execute(sql, part)


def append_rows(cursor: Any, sql: Statements, queued: list[Any], chain: Chain) -> None:
    """In the cursor's transaction: lock the head, let ``chain`` link the ``queued`` values
    after it, insert the rows and advance the head. Concurrent writers queue on the head's
    lock (on PostgreSQL an advisory lock first, so even the very first batches of several
    processes, before the head row exists, wait in turn; SQLite's RESERVED lock), so the
    chain never forks."""
    if sql.serialize is not None:
        cursor.execute(sql.serialize)
    cursor.execute(sql.lock)
    if not cursor.rowcount:
        cursor.execute(sql.init, (_now(),))
    cursor.execute(sql.head)
    seq, prev = cursor.fetchone() or (0, GENESIS)
    flat, last_seq, last_hash = chain(int(seq), str(prev), queued)
    sql.insert(cursor, flat)
    cursor.execute(sql.advance, (last_seq, last_hash, _now()))
