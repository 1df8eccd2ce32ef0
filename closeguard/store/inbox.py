"""The durable inbox's table and queries: every Close event received, once per event id.

``dispatched`` turns true in the transaction that queues the event's runs (or right after
it, for a queue outside the store), so an event stored by a process that died before
queueing its runs is found by ``undispatched`` and queued on the next start.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    select,
)
from sqlalchemy import update as sql_update

from closeguard.store.core import Store, dialect_insert, table_group

__all__ = ["EventRow", "InboxRows", "define"]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "inbox",
        metadata,
        Column("event_id", String(100), primary_key=True),
        Column("source", String(40), nullable=False),
        Column("received", Float, nullable=False, index=True),
        Column("object_type", String(60)),
        Column("action", String(60)),
        Column("lead_id", String(100)),
        Column("payload", Text, nullable=False),
        Column("dispatched", Boolean, nullable=False, default=False, index=True),
    )


@dataclass(frozen=True)
class EventRow:
    event_id: str
    source: str
    received: float
    object_type: str | None
    action: str | None
    lead_id: str | None
    payload: dict[str, Any]
    dispatched: bool


class InboxRows:
    """Synchronous queries on ``inbox``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = store.tables["inbox"]

    def insert(
        self, conn: Connection, events: Sequence[Mapping[str, Any]], source: str
    ) -> list[str]:
        """Store the events whose id is new; the ids of those stored."""
        if not events:
            return []
        now = time.time()
        rows = [
            {
                "event_id": str(e["id"]),
                "source": source,
                "received": now,
                "object_type": e.get("object_type"),
                "action": e.get("action"),
                "lead_id": e.get("lead_id"),
                "payload": json.dumps(e, default=str),
                "dispatched": False,
            }
            for e in events
        ]
        if len(rows) == 1:
            return self.store.insert_new(conn, self.table, rows[0], ("event_id",), "event_id")
        statement = (
            dialect_insert(self.store.dialect, self.table)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(self.table.c.event_id, sort_by_parameter_order=True)
        )
        return [str(r[0]) for r in conn.execute(statement, rows)]

    def mark_dispatched(self, conn: Connection, event_ids: Sequence[str]) -> None:
        if len(event_ids) == 1:
            t = self.table
            one = self.store.prepared(
                conn,
                "inbox.dispatched",
                lambda: (
                    sql_update(t)
                    .where(t.c.event_id == bindparam("event_id", ""))
                    .values(dispatched=True)
                ),
            )
            one.execute(conn, {"event_id": event_ids[0]})
        elif event_ids:
            t = self.table
            conn.execute(
                sql_update(t).where(t.c.event_id.in_(list(event_ids))).values(dispatched=True)
            )

    def undispatched(self, limit: int = 1000) -> list[EventRow]:
        t = self.table
        query = select(t).where(t.c.dispatched.is_(False)).order_by(t.c.received).limit(limit)
        with self.store.engine.connect() as conn:
            return [_event(r._mapping) for r in conn.execute(query)]

    def get(self, event_id: str) -> EventRow | None:
        t = self.table
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.event_id == event_id)).first()
        return None if row is None else _event(row._mapping)

    def recent(self, limit: int = 50) -> list[EventRow]:
        t = self.table
        query = select(t).order_by(t.c.received.desc()).limit(limit)
        with self.store.engine.connect() as conn:
            return [_event(r._mapping) for r in conn.execute(query)]


def _event(data: Any) -> EventRow:
    values = dict(data)
    values["payload"] = json.loads(values["payload"])
    values["dispatched"] = bool(values["dispatched"])
    return EventRow(**values)
