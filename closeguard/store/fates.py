"""What became of the Close objects runs are about: the merge map and the deletions seen.

Two tables, fed by the events the runtime's intake sees (webhook deliveries and Event Log
catch-up, in the inbox's transaction) and by what a run finds out itself:

- ``lead_merges``: ``source lead -> destination lead``, one row per merged-away lead
  (Close puts ``merge_source_lead_id`` / ``merge_destination_lead_id`` in the ``meta`` of
  every event a merge causes). ``resolve`` follows a chain of merges to its last
  destination.
- ``gone_objects``: leads, opportunities and tasks deleted (not merged), by id.

A run whose lead was merged away continues on the destination; a run whose lead (or deal,
or task) is gone ends ``skipped``. Both tables only grow by facts Close reported, and a row
is written once (a fact never changes: a merged or deleted id is never reused).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Float, MetaData, String, Table, bindparam, select

from closeguard.store.core import Store, dialect_insert, table_group

__all__ = ["GONE_TYPES", "Fate", "LeadFates", "define", "is_fate_event", "merge_of"]

GONE_TYPES = ("lead", "opportunity", "task")
"""The objects a run can be about, whose deletion makes it moot."""
MAX_CHAIN = 100


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "lead_merges",
        metadata,
        Column("source", String(100), primary_key=True),
        Column("destination", String(100), nullable=False, index=True),
        Column("event_id", String(100)),
        Column("recorded", Float, nullable=False),
    )
    Table(
        "gone_objects",
        metadata,
        Column("object_id", String(100), primary_key=True),
        Column("object_type", String(60), nullable=False),
        Column("event_id", String(100)),
        Column("recorded", Float, nullable=False),
    )


@dataclass(frozen=True)
class Fate:
    """Where a lead ended up: ``lead`` (itself, or the last destination of its merges),
    ``merged_from`` (the chain walked, oldest first; empty when it was not merged) and
    ``gone`` (``lead`` itself was deleted)."""

    lead: str
    merged_from: tuple[str, ...] = ()
    gone: bool = False


def merge_of(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(source, destination)`` when ``event`` was caused by a merge, else None."""
    meta = event.get("meta") or {}
    if not isinstance(meta, Mapping):
        return None
    source, destination = meta.get("merge_source_lead_id"), meta.get("merge_destination_lead_id")
    if isinstance(source, str) and isinstance(destination, str) and source and destination:
        return source, destination
    return None


def _deletion_of(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(object_type, object_id)`` of a plain deletion (not a merge's) of a tracked kind."""
    if event.get("action") != "deleted" or merge_of(event) is not None:
        return None
    kind, oid = event.get("object_type"), event.get("object_id")
    if kind in GONE_TYPES and isinstance(oid, str) and oid:
        return str(kind), oid
    return None


def is_fate_event(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` tells of a merge or of a tracked deletion."""
    return merge_of(event) is not None or _deletion_of(event) is not None


class LeadFates:
    """Queries on ``lead_merges`` and ``gone_objects`` (sync; async callers use
    ``store.run``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.merges = store.tables["lead_merges"]
        self.gone = store.tables["gone_objects"]

    def _insert(self, table: Table, rows: list[dict[str, Any]], key: str) -> Any:
        insert = dialect_insert(self.store.dialect, table).values(rows)
        return insert.on_conflict_do_nothing(index_elements=[key])

    def note_events(
        self, conn: Connection, events: list[Mapping[str, Any]]
    ) -> list[tuple[str, str]]:
        """Record the merges and deletions these events tell of, in ``conn``'s transaction;
        the merges new to the map, as ``(source, destination)``."""
        now = time.time()
        merges: dict[str, dict[str, Any]] = {}
        gone: dict[str, dict[str, Any]] = {}
        for event in events:
            pair = merge_of(event)
            if pair is not None and pair[0] != pair[1]:
                merges.setdefault(
                    pair[0],
                    {
                        "source": pair[0],
                        "destination": pair[1],
                        "event_id": event.get("id"),
                        "recorded": now,
                    },
                )
            deletion = _deletion_of(event)
            if deletion is not None:
                gone.setdefault(
                    deletion[1],
                    {
                        "object_id": deletion[1],
                        "object_type": deletion[0],
                        "event_id": event.get("id"),
                        "recorded": now,
                    },
                )
        new: list[tuple[str, str]] = []
        if merges:
            m = self.merges
            known = set(
                conn.execute(select(m.c.source).where(m.c.source.in_(list(merges)))).scalars()
            )
            fresh = [row for source, row in merges.items() if source not in known]
            if fresh:
                conn.execute(self._insert(m, fresh, "source"))
                new = [(r["source"], r["destination"]) for r in fresh]
        if gone:
            conn.execute(self._insert(self.gone, list(gone.values()), "object_id"))
        return new

    def record_merge(self, source: str, destination: str, event_id: str | None = None) -> bool:
        """Record one merge a run found out itself; True if it was new."""
        event = {
            "id": event_id,
            "meta": {"merge_source_lead_id": source, "merge_destination_lead_id": destination},
        }
        with self.store.engine.begin() as conn:
            return bool(self.note_events(conn, [event]))

    def record_gone(self, object_type: str, object_id: str, event_id: str | None = None) -> None:
        """Record a deletion a run found out itself."""
        event = {
            "id": event_id,
            "action": "deleted",
            "object_type": object_type,
            "object_id": object_id,
        }
        with self.store.engine.begin() as conn:
            self.note_events(conn, [event])

    def resolve(self, lead_id: str) -> Fate:
        """Follow ``lead_id``'s merges to the last destination (see ``Fate``)."""
        with self.store.engine.connect() as conn:
            return self.resolve_in(conn, lead_id)

    def resolve_in(self, conn: Connection, lead_id: str) -> Fate:
        """``resolve`` in ``conn``'s transaction."""
        m = self.merges
        step = self.store.prepared(
            conn,
            "fates.destination",
            lambda: select(m.c.destination).where(m.c.source == bindparam("source", "")),
        )
        chain: list[str] = []
        current = lead_id
        while len(chain) < MAX_CHAIN:
            destination = step.execute(conn, {"source": current}).scalar()
            if destination is None or destination in chain or destination == lead_id:
                break
            chain.append(current)
            current = str(destination)
        return Fate(current, tuple(chain), self._is_gone(conn, current))

    def is_gone(self, object_id: str) -> bool:
        with self.store.engine.connect() as conn:
            return self._is_gone(conn, object_id)

    def _is_gone(self, conn: Connection, object_id: str) -> bool:
        g = self.gone
        found = self.store.prepared(
            conn,
            "fates.gone",
            lambda: select(g.c.object_id).where(g.c.object_id == bindparam("object_id", "")),
        )
        return found.execute(conn, {"object_id": object_id}).first() is not None

    def merged_into(self, destination: str) -> list[str]:
        """The leads merged straight into ``destination``."""
        m = self.merges
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(m.c.source).where(m.c.destination == destination))
            return sorted(str(s) for s in rows.scalars())
