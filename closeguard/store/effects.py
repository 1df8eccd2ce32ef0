"""The effect journal's table and queries: one row per (run, effect key).

A row is written as an ``intent`` before a workflow's write is sent and becomes ``done``
with the write's JSON result after it, so a run retried after a crash knows which writes
landed, which did not, and which it must read back from Close.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import (
    Column,
    Connection,
    Float,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    select,
)

from closeguard.store.core import Prepared, Store, dialect_insert, table_group

__all__ = [
    "PENDING_INTENT",
    "AlreadyJournaled",
    "EffectRow",
    "EffectRows",
    "PendingIntent",
    "define",
]

EffectStatus = Literal["intent", "done"]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "effects",
        metadata,
        Column("run_id", String(64), primary_key=True),
        Column("key", String(300), primary_key=True),
        Column("status", String(10), nullable=False),
        Column("result", Text),
        Column("created", Float, nullable=False),
        Column("updated", Float, nullable=False),
    )


@dataclass(frozen=True)
class EffectRow:
    run_id: str
    key: str
    status: EffectStatus
    result: Any
    created: float
    updated: float


class AlreadyJournaled(Exception):
    """The intent a journal left pending met a row already there (another worker took
    the run over meanwhile): the write is not sent, the journal reads the row instead."""


class PendingIntent(Protocol):
    """A journaled write's intent not committed yet, for the guard to commit in the
    transaction of the first write the journaled code sends (with its quota charge):
    one store trip for both, and still before the write leaves."""

    def open(self) -> bool:
        """Still to be committed (False once committed or once the write is over)."""
        ...

    def commit_in(self, conn: Connection) -> None:
        """Record the intent (and the journal's results waiting for a commit) in
        ``conn``'s transaction; ``AlreadyJournaled`` if a row is there."""
        ...

    def settle(self, committed: bool) -> None:
        """The transaction of ``commit_in`` committed (or not: everything stays pending)."""
        ...


PENDING_INTENT: ContextVar[PendingIntent | None] = ContextVar("pending_intent", default=None)
"""Set by the effect journal around a journaled write; read by the guard's transport."""


class EffectRows:
    """Synchronous queries on ``effects`` (the journal calls them as store trips)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = store.tables["effects"]

    def get(self, run_id: str, key: str) -> EffectRow | None:
        with self.store.engine.connect() as conn:
            return self._get(conn, run_id, key)

    def _sql(self, conn: Connection, which: str) -> Prepared:
        """The journal's statements, compiled once per store."""
        return self.store.prepared(conn, ("effects", which), lambda: self._statement(which))

    def _statement(self, which: str) -> Any:
        t = self.table
        this = and_(t.c.run_id == bindparam("run_id", ""), t.c.key == bindparam("key", ""))
        now: Any = bindparam("now", 0.0)
        if which == "get":
            return select(t).where(this)
        if which == "for_run":
            return select(t).where(t.c.run_id == bindparam("run_id", "")).order_by(t.c.created)
        values: dict[str, Any] = {"run_id": bindparam("run_id", ""), "key": bindparam("key", "")}
        if which in ("intent", "new_intent"):
            statement = (
                dialect_insert(self.store.dialect, t)
                .values(**values, status="intent", created=now, updated=now)
                .on_conflict_do_nothing(index_elements=["run_id", "key"])
            )
            return statement.returning(t.c.key) if which == "new_intent" else statement
        result: Any = bindparam("result", "")
        # an upsert: a write whose intent never needed committing (it sent nothing) too
        return (
            dialect_insert(self.store.dialect, t)
            .values(**values, status="done", result=result, created=now, updated=now)
            .on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={"status": "done", "result": result, "updated": now},
            )
        )

    def _get(self, conn: Connection, run_id: str, key: str) -> EffectRow | None:
        row = self._sql(conn, "get").execute(conn, {"run_id": run_id, "key": key}).first()
        if row is None:
            return None
        data = dict(row._mapping)
        data["result"] = None if data["result"] is None else json.loads(data["result"])
        return EffectRow(**data)

    def begin(
        self, run_id: str, key: str, done: Sequence[tuple[str, str, Any]] = ()
    ) -> EffectRow | None:
        """The row already journaled for this write, or None after recording its intent;
        ``done``: results of earlier writes, ``(run_id, key, result)``, recorded in the same
        transaction (one commit for both)."""
        with self.store.engine.begin() as conn:
            self.done_in(conn, done)
            found = self._get(conn, run_id, key)
            if found is None:
                self._intent(conn, run_id, key)
        return found

    def intent(self, run_id: str, key: str) -> None:
        """Record that the write is about to be sent (kept if it is already there)."""
        with self.store.engine.begin() as conn:
            self._intent(conn, run_id, key)

    def _intent(self, conn: Connection, run_id: str, key: str) -> None:
        values = {"run_id": run_id, "key": key, "now": time.time()}
        self._sql(conn, "intent").execute(conn, values)

    def new_intent_in(self, conn: Connection, run_id: str, key: str) -> bool:
        """Record the intent in ``conn``'s transaction; False (nothing written) when the
        write already has a row."""
        values = {"run_id": run_id, "key": key, "now": time.time()}
        return self._sql(conn, "new_intent").execute(conn, values).first() is not None

    def done(self, run_id: str, key: str, result: Any) -> None:
        with self.store.engine.begin() as conn:
            self.done_in(conn, [(run_id, key, result)])

    def done_in_own(self, done: Sequence[tuple[str, str, Any]]) -> None:
        """``done_in`` in a transaction of its own."""
        with self.store.engine.begin() as conn:
            self.done_in(conn, done)

    def done_in(self, conn: Connection, done: Sequence[tuple[str, str, Any]]) -> None:
        """Record writes' results, ``(run_id, key, result)``, in ``conn``'s transaction."""
        for run_id, key, result in done:
            text = json.dumps(result, default=str)
            values = {"run_id": run_id, "key": key, "result": text, "now": time.time()}
            self._sql(conn, "done").execute(conn, values)

    def for_run(self, run_id: str) -> list[EffectRow]:
        with self.store.engine.connect() as conn:
            return self.for_run_in(conn, run_id)

    def for_run_in(self, conn: Connection, run_id: str) -> list[EffectRow]:
        """The run's rows, oldest first, in ``conn``'s transaction (a claim's)."""
        rows = self._sql(conn, "for_run").execute(conn, {"run_id": run_id}).all()
        out = []
        for row in rows:
            data = dict(row._mapping)
            data["result"] = None if data["result"] is None else json.loads(data["result"])
            out.append(EffectRow(**data))
        return out
