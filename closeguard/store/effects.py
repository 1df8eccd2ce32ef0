"""The effect journal's table and queries: one row per (run, effect key).

A row is written as an ``intent`` before a workflow's write is sent and becomes ``done``
with the write's JSON result after it, so a run retried after a crash knows which writes
landed, which did not, and which it must read back from Close.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Column, Float, MetaData, String, Table, Text, and_, select, update
from sqlalchemy.exc import IntegrityError

from closeguard.store.core import Store, table_group

__all__ = ["EffectRow", "EffectRows", "define"]

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


class EffectRows:
    """Synchronous queries on ``effects`` (the journal calls them off the event loop)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = store.tables["effects"]

    def get(self, run_id: str, key: str) -> EffectRow | None:
        t = self.table
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t).where(and_(t.c.run_id == run_id, t.c.key == key))).first()
        if row is None:
            return None
        data = dict(row._mapping)
        data["result"] = None if data["result"] is None else json.loads(data["result"])
        return EffectRow(**data)

    def begin(self, run_id: str, key: str) -> EffectRow | None:
        """The row already journaled for this write, or None after recording its intent."""
        found = self.get(run_id, key)
        if found is None:
            self.intent(run_id, key)
        return found

    def intent(self, run_id: str, key: str) -> None:
        """Record that the write is about to be sent (kept if it is already there)."""
        now = time.time()
        try:
            with self.store.engine.begin() as conn:
                conn.execute(
                    self.table.insert().values(
                        run_id=run_id, key=key, status="intent", created=now, updated=now
                    )
                )
        except IntegrityError:
            pass

    def done(self, run_id: str, key: str, result: Any) -> None:
        t = self.table
        with self.store.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(and_(t.c.run_id == run_id, t.c.key == key))
                .values(status="done", result=json.dumps(result, default=str), updated=time.time())
            )

    def for_run(self, run_id: str) -> list[EffectRow]:
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.created)).all()
        out = []
        for row in rows:
            data = dict(row._mapping)
            data["result"] = None if data["result"] is None else json.loads(data["result"])
            out.append(EffectRow(**data))
        return out
