"""The audit log's tables and queries: ``audit`` rows and their ``audit_head``.

The chain itself (what is hashed, how rows link) is the guard's, in
``closeguard.guardrails.audit``; this module stores rows and reads them back. Writes run
pre-rendered SQL on the DBAPI driver's own cursor: a flush costs no SQLAlchemy compilation.
"""

from __future__ import annotations

import sqlite3
import weakref
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)

from closeguard.store.core import Store, table_group
from closeguard.store.records import AUDIT_COLUMNS, GENESIS
from closeguard.tools.errors import StoreError

__all__ = ["COLUMNS", "GENESIS", "AuditRows", "define"]

COLUMNS = AUDIT_COLUMNS
_WIDTH = len(COLUMNS)
_CHUNK = 999 // _WIDTH
"""Rows per multi-row insert: within SQLite's oldest limit of 999 bound variables."""

Chain = Callable[[int, str, list[Any]], tuple[list[Any], int, str]]
"""``chain(seq, prev_hash, queued)``: the rows following the head, every column of each in
``COLUMNS`` order in one flat list, then the last row's ``seq`` and hash."""


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "audit",
        metadata,
        Column(
            "seq",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        Column("ts", String(40), nullable=False),
        Column("actor", String(200)),
        Column("run_id", String(200)),
        Column("call_id", String(100)),
        Column("attempt", Integer),
        Column("policy", String(200)),
        Column("endpoint", String(100)),
        Column("method", String(10), nullable=False),
        Column("path", Text, nullable=False),
        Column("access", String(20)),
        Column("decision", String(30), nullable=False),
        Column("rule", String(300)),
        Column("reason", Text),
        Column("args", Text, nullable=False),
        Column("status_code", Integer),
        Column("latency_us", BigInteger),
        Column("error", Text),
        Column("approval_id", String(64)),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )
    Table(
        "audit_head",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", BigInteger, nullable=False),
        Column("hash", String(64), nullable=False),
        Column("updated", String(40), nullable=False),
    )


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


class _Statements:
    """The SQL of an append, rendered once for the store's DBAPI driver (positional
    parameters: SQLite's ``?``, psycopg's ``%s``)."""

    def __init__(self, store: Store) -> None:
        dialect = store.engine.dialect
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if mark is None:
            raise StoreError(
                f"the audit log needs a driver with positional parameters, "
                f"not {dialect.paramstyle!r}"
            )
        prep = dialect.identifier_preparer

        def c(name: str) -> str:
            return str(prep.quote(name))

        audit = prep.format_table(store.tables.audit)
        head = prep.format_table(store.tables.audit_head)
        one = f"WHERE {c('id')} = 1"
        self.lock = f"UPDATE {head} SET {c('seq')} = {c('seq')} {one}"
        key = zlib.crc32(f"closeguard-audit:{head}".encode())
        self.serialize = (
            f"SELECT pg_advisory_xact_lock({key})" if dialect.name == "postgresql" else None
        )
        self.head = f"SELECT {c('seq')}, {c('hash')} FROM {head} {one}"
        self.init = (
            f"INSERT INTO {head} ({c('id')}, {c('seq')}, {c('hash')}, {c('updated')}) "
            f"VALUES (1, 0, '{GENESIS}', {mark})"
        )
        self.advance = (
            f"UPDATE {head} SET {c('seq')} = {mark}, {c('hash')} = {mark}, "
            f"{c('updated')} = {mark} {one}"
        )
        self._into = f"INSERT INTO {audit} ({', '.join(c(n) for n in COLUMNS)}) VALUES "
        self._values = f"({', '.join([mark] * len(COLUMNS))})"
        self.range = (
            f"SELECT {', '.join(c(n) for n in COLUMNS)} FROM {audit} "
            f"WHERE {c('seq')} BETWEEN {mark} AND {mark} ORDER BY {c('seq')}"
        )
        self._sqlite = dialect.name == "sqlite"
        self._many: dict[int, str] = {}
        if self._sqlite:
            _bind_none_as_is()

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


_rendered: weakref.WeakKeyDictionary[Store, _Statements] = weakref.WeakKeyDictionary()


class AuditRows:
    """Appends and reads ``audit`` rows in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sql: _Statements | None = None

    def append(self, queued: list[Any], chain: Chain) -> None:
        """In one transaction: lock the head, let ``chain`` link the ``queued`` values after
        it, insert the rows and advance the head. Concurrent writers queue on the head's
        lock (on PostgreSQL an advisory lock first, so even the very first batches of several
        processes, before the head row exists, wait in turn; SQLite's RESERVED lock), so the
        chain never forks."""
        with self.store.engine.begin() as conn:
            self.append_in(conn, queued, chain)

    def append_in(self, conn: Connection, queued: list[Any], chain: Chain) -> None:
        """``append`` in ``conn``'s transaction."""
        sql = self._sql or self._statements()
        cursor = conn.connection.cursor()
        try:
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
        finally:
            cursor.close()

    def _statements(self) -> _Statements:
        """The store's append SQL, rendered once per store (a run's log makes its own rows)."""
        found = _rendered.get(self.store)
        if found is None:
            found = _rendered[self.store] = _Statements(self.store)
        self._sql = found
        return found

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row written, ``(0, GENESIS)`` before the first."""
        t = self.store.tables.audit_head
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t.c.seq, t.c.hash).where(t.c.id == 1)).first()
        return (int(row.seq), str(row.hash)) if row else (0, GENESIS)

    def tail(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` rows, oldest first."""
        t = self.store.tables.audit
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.seq.desc()).limit(n)).all()
        return [dict(r._mapping) for r in reversed(rows)]

    def get(self, seq: int) -> dict[str, Any] | None:
        t = self.store.tables.audit
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.seq == seq)).first()
        return dict(row._mapping) if row else None

    def rows(
        self, *, chunk: int = 1000, start: int | None = None, stop: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every row in ``seq`` order (only ``start`` to ``stop``, both included, when
        given), read ``chunk`` rows per query."""
        t = self.store.tables.audit
        last = None if start is None else start - 1
        while True:
            query = select(t).order_by(t.c.seq).limit(chunk)
            if last is not None:
                query = query.where(t.c.seq > last)
            if stop is not None:
                query = query.where(t.c.seq <= stop)
            with self.store.engine.connect() as conn:
                batch = conn.execute(query).all()
            if not batch:
                return
            for r in batch:
                yield dict(r._mapping)
            last = batch[-1].seq

    def with_decision(self, decision: str) -> list[dict[str, Any]]:
        """The rows whose ``decision`` is ``decision``, oldest first (anchor rows: few)."""
        t = self.store.tables.audit
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.decision == decision).order_by(t.c.seq))
            return [dict(r._mapping) for r in rows]

    def batches(
        self, start: int, stop: int, *, chunk: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Rows ``start`` to ``stop`` as tuples in ``COLUMNS`` order, a range of ``chunk``
        seqs a query, on the driver's own cursor (no row objects built): the archive's
        fast path. Each query is bounded on both sides, so the planner reads just that
        range even when its statistics are stale (a ``LIMIT`` alone let PostgreSQL sort
        the whole rest)."""
        sql = (self._sql or self._statements()).range
        for low in range(start, stop + 1, chunk):
            high = min(low + chunk - 1, stop)
            with self.store.engine.connect() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(sql, (low, high))
                    batch = [tuple(r) for r in cursor.fetchall()]
                finally:
                    cursor.close()
            if batch:
                yield batch

    def matching(
        self,
        *,
        policy: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        chunk: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """The rows of ``policy`` and/or ``actor`` from ``since`` (an ISO time, compared
        as the stored text: write it as ``ts`` is written), in ``seq`` order, ``chunk``
        rows per query."""
        t = self.store.tables.audit
        where = []
        if policy is not None:
            where.append(t.c.policy == policy)
        if actor is not None:
            where.append(t.c.actor == actor)
        if since is not None:
            where.append(t.c.ts >= since)
        last = 0
        while True:
            query = select(t).where(t.c.seq > last, *where).order_by(t.c.seq).limit(chunk)
            with self.store.engine.connect() as conn:
                batch = conn.execute(query).all()
            if not batch:
                return
            for r in batch:
                yield dict(r._mapping)
            last = batch[-1].seq
