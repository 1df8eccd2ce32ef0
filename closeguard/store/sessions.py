"""The ``console_sessions`` table: logged-in console sessions every console process shares.

A session is found by the SHA-256 of its cookie value (the cookie itself is never stored),
so several console processes behind one proxy serve the same people, and a restart logs
nobody out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, Text, delete, insert, select, update

from closeguard.store.core import Store, table_group

__all__ = ["SessionRows", "define"]

Row = dict[str, Any]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "console_sessions",
        metadata,
        Column("id_hash", String(64), primary_key=True),
        Column("name", String(100), nullable=False),
        Column("roles", Text, nullable=False),
        Column("via", String(20), nullable=False),
        Column("csrf", String(64), nullable=False),
        Column("expires", Float, nullable=False, index=True),
        Column("flash", Text),
        Column("error", Text),
    )


class SessionRows:
    """Reads and writes of ``console_sessions`` rows in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.tables.console_sessions

    def open(self, values: Mapping[str, Any], now: float) -> None:
        """Insert a session, dropping every expired one on the way."""
        with self.store.engine.begin() as conn:
            conn.execute(delete(self.t).where(self.t.c.expires <= now))
            conn.execute(insert(self.t).values(**values))

    def get(self, id_hash: str, now: float) -> Row | None:
        t = self.t
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(t).where((t.c.id_hash == id_hash) & (t.c.expires > now))
            ).first()
        return dict(row._mapping) if row else None

    def set(self, id_hash: str, **values: Any) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(update(self.t).where(self.t.c.id_hash == id_hash).values(**values))

    def take_messages(self, id_hash: str) -> tuple[str | None, str | None]:
        """The session's flash and error, cleared in the same transaction."""
        t = self.t
        with self.store.engine.begin() as conn:
            row = conn.execute(select(t.c.flash, t.c.error).where(t.c.id_hash == id_hash)).first()
            if row is None or (row.flash is None and row.error is None):
                return None, None
            conn.execute(update(t).where(t.c.id_hash == id_hash).values(flash=None, error=None))
        return row.flash, row.error

    def close(self, id_hash: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(delete(self.t).where(self.t.c.id_hash == id_hash))
