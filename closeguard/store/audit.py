"""The audit log's tables and queries: ``audit`` rows and their ``audit_head``.

The chain itself (what is hashed, how rows link) is the guard's, in
``closeguard.guardrails.audit``; this module stores rows and reads them back. Writes run
pre-rendered SQL on the DBAPI driver's own cursor: a flush costs no SQLAlchemy compilation.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
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
from sqlalchemy.exc import SQLAlchemyError

from closeguard.store.auditsql import Chain, Statements, append_rows
from closeguard.store.core import Store, table_group
from closeguard.store.records import AUDIT_COLUMNS, GENESIS
from closeguard.tools.errors import StoreError

__all__ = ["COLUMNS", "GENESIS", "AuditRows", "define"]

COLUMNS = AUDIT_COLUMNS


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


def _statements(store: Store) -> Statements:
    """The append SQL rendered for the store's DBAPI driver (positional parameters)."""
    dialect = store.engine.dialect
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if mark is None:
        raise StoreError(
            f"the audit log needs a driver with positional parameters, not {dialect.paramstyle!r}"
        )
    prep = dialect.identifier_preparer
    return Statements(
        mark=mark,
        audit=prep.format_table(store.tables.audit),
        head=prep.format_table(store.tables.audit_head),
        dialect=dialect.name,
        quote=lambda name: str(prep.quote(name)),
    )


_rendered: weakref.WeakKeyDictionary[Store, Statements] = weakref.WeakKeyDictionary()


class AuditRows:
    """Appends and reads ``audit`` rows in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sql: Statements | None = None

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """SQLAlchemy's errors and the driver's own (raised from its cursor, unwrapped)."""
        return (SQLAlchemyError, self.store.engine.dialect.loaded_dbapi.Error)

    def append(self, queued: list[Any], chain: Chain) -> None:
        """``auditsql.append_rows`` in a transaction of its own: ``chain`` links the
        ``queued`` values after the head, locked, so the chain never forks."""
        with self.store.engine.begin() as conn:
            self.append_in(conn, queued, chain)

    def append_in(self, conn: Connection, queued: list[Any], chain: Chain) -> None:
        """``append`` in ``conn``'s transaction."""
        sql = self._sql or self._statements()
        cursor = conn.connection.cursor()
        try:
            append_rows(cursor, sql, queued, chain)
        finally:
            cursor.close()

    def _statements(self) -> Statements:
        """The store's append SQL, rendered once per store (a run's log makes its own rows)."""
        found = _rendered.get(self.store)
        if found is None:
            found = _rendered[self.store] = _statements(self.store)
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
