"""Durable round robin: a counter per set of users, and each subject's turn, kept once.

- ``rotation_counters``: ``key -> next`` turn, one row per rotation and set of users (the
  key names the rotation and hashes the sorted user ids, so a user leaving or joining
  starts a rotation of its own over the users there are).
- ``rotation_turns``: ``subject -> (key, turn, user)``: the turn a subject (a lead) got.
  A subject takes a turn once: a retried run, or a second run for the same lead, gets the
  first choice back, and takes no other turn.

``take`` is one transaction that starts with a write (the subject's row), so on SQLite
it holds the single writer from its first statement, and on PostgreSQL a second process
taking the same subject waits for the first to commit and then reads its choice. The
counter's step is one ``INSERT ... ON CONFLICT DO UPDATE SET next = next + 1 RETURNING``,
atomic on both. Whatever interleaving of workers, restarts, deletes and merges, turns are
handed out 0, 1, 2, ... with none given twice, so users' counts stay within one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    select,
    update,
)

from closeguard.store.core import Prepared, Store, dialect_insert, table_group

__all__ = ["Rotation", "Turn", "define", "rotation_key"]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "rotation_counters",
        metadata,
        Column("key", String(200), primary_key=True),
        Column("next", Integer, nullable=False),
        Column("updated", Float, nullable=False),
    )
    Table(
        "rotation_turns",
        metadata,
        Column("subject", String(300), primary_key=True),
        Column("key", String(200), nullable=False),
        Column("turn", Integer, nullable=False),
        Column("user_id", String(100), nullable=False),
        Column("recorded", Float, nullable=False),
    )


@dataclass(frozen=True)
class Turn:
    """A subject's place in a rotation: ``user_id`` is ``users[turn % len(users)]``."""

    subject: str
    key: str
    turn: int
    user_id: str


def rotation_key(name: str, users: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(set(users))).encode()).hexdigest()[:24]
    return f"{name}:{digest}"


class Rotation:
    """Round robin turns in ``store`` (sync; async callers use ``store.run``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.counters = store.tables["rotation_counters"]
        self.turns = store.tables["rotation_turns"]

    def _insert(self, table: Table) -> Any:
        return dialect_insert(self.store.dialect, table)

    def _sql(self, conn: Connection, which: str) -> Prepared:
        """``take``'s statements, compiled once per store."""
        return self.store.prepared(conn, ("rotation", which), lambda: self._statement(which))

    def _statement(self, which: str) -> Any:
        t, c = self.turns, self.counters
        full: Any = bindparam("subject", "")
        key: Any = bindparam("key", "")
        now: Any = bindparam("now", 0.0)
        if which == "claim":
            return (
                self._insert(t)
                .values(subject=full, key=key, turn=-1, user_id="", recorded=now)
                .on_conflict_do_nothing(index_elements=["subject"])
                .returning(t.c.subject)
            )
        if which == "taken":
            return select(t.c.key, t.c.turn, t.c.user_id).where(t.c.subject == full)
        if which == "step":
            step = self._insert(c).values(key=key, next=1, updated=now)
            return step.on_conflict_do_update(
                index_elements=["key"], set_={"next": c.c.next + 1, "updated": now}
            ).returning(c.c.next)
        return (
            update(t)
            .where(and_(t.c.subject == full, t.c.turn == -1))
            .values(turn=bindparam("turn", 0), user_id=bindparam("user_id", ""))
        )

    def take(self, name: str, subject: str, users: Sequence[str]) -> Turn:
        """``subject``'s turn in the rotation ``name`` over ``users`` (sorted, distinct):
        the next one, or the one it already took."""
        ordered = sorted(set(users))
        if not ordered:
            raise ValueError(f"rotation {name!r}: no users to take turns")
        with self.store.engine.begin() as conn:
            return self.take_in(conn, name, subject, ordered)

    def take_in(self, conn: Connection, name: str, subject: str, users: Sequence[str]) -> Turn:
        """``take`` in ``conn``'s transaction (a run's claim: one commit for both)."""
        ordered = sorted(set(users))
        if not ordered:
            raise ValueError(f"rotation {name!r}: no users to take turns")
        key = rotation_key(name, ordered)
        values = {"subject": f"{name}:{subject}", "key": key, "now": time.time()}
        claimed = self._sql(conn, "claim").execute(conn, values).first()
        if claimed is None:
            row = self._sql(conn, "taken").execute(conn, values).one()
            return Turn(subject, str(row.key), int(row.turn), str(row.user_id))
        taken = self._sql(conn, "step").execute(conn, values).scalar_one()
        turn = int(taken) - 1
        user = ordered[turn % len(ordered)]
        self._sql(conn, "record").execute(conn, {**values, "turn": turn, "user_id": user})
        return Turn(subject, key, turn, user)

    def counts(self, name: str) -> dict[str, int]:
        """How many subjects each user got in rotation ``name`` (all its user sets)."""
        t = self.turns
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.user_id).where(and_(t.c.subject.startswith(f"{name}:"), t.c.turn >= 0))
            ).scalars()
            counts: dict[str, int] = {}
            for user in rows:
                counts[str(user)] = counts.get(str(user), 0) + 1
        return counts
