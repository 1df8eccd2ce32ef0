"""The ``quota_counters`` table: per-window call counts every worker on a store shares.

``charge`` counts one call against several limits in one transaction; each count is one
conditional upsert whose ``RETURNING`` says whether it counted, so two workers cannot both
take the last unit of a window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
)
from sqlalchemy.sql.expression import Executable

from closeguard.store.core import Store, dialect_insert, table_group

__all__ = ["QuotaCounters", "define"]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "quota_counters",
        metadata,
        Column("key", String(400), primary_key=True),
        Column("window_start", BigInteger, primary_key=True, autoincrement=False),
        Column("count", Integer, nullable=False),
    )


class _Exceeded(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class QuotaCounters:
    """Conditional increments and reads of ``quota_counters`` in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.tables.quota_counters

    def charge(
        self,
        limits: Sequence[tuple[str, int]],
        start: int,
        *,
        before: Callable[[Connection], None] | None = None,
    ) -> str | None:
        """Add one to each ``(key, limit)`` counter of the window starting at ``start``, all
        or none: the first key already at its limit (nothing counted), else ``None``.
        ``before``: more work for the transaction, committed only with the counts."""
        try:
            with self.store.engine.begin() as conn:
                if before is not None:
                    before(conn)
                for key, limit in limits:
                    upsert = self.store.prepared(
                        conn, ("quotas.charge", limit > 0), partial(self._upsert, limit)
                    )
                    values = {"key": key, "start": start, "limit": limit}
                    if upsert.execute(conn, values).first() is None:
                        raise _Exceeded(key)
        except _Exceeded as exc:
            return exc.key
        return None

    def count(self, key: str, start: int) -> int:
        t = self.t
        with self.store.engine.connect() as conn:
            row = conn.execute(
                t.select().where((t.c.key == key) & (t.c.window_start == start))
            ).first()
        return int(row._mapping["count"]) if row else 0

    def _upsert(self, limit: int) -> Executable:
        t = self.t
        key: Any = bindparam("key", "")
        start: Any = bindparam("start", 0)
        ceiling: Any = bindparam("limit", 0)
        if limit <= 0:
            # An insert of a first row would pass; a zero limit never does.
            return t.update().where(t.c.key == "\x00never").returning(t.c.key)
        index = [t.c.key, t.c.window_start]
        bump = {"count": t.c["count"] + 1}
        first = dialect_insert(self.store.dialect, t).values(key=key, window_start=start, count=1)
        return first.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=index, set_=bump, where=t.c["count"] < ceiling
        ).returning(t.c["count"])
