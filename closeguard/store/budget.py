"""The ``rate_budget`` table: the shared Close rate windows on the store.

One row per (scope, endpoint group) holding a window as plain numbers (``end``,
``limit``, ``span``, ``used``); ``BudgetRows.change`` applies a function to it under
``SELECT ... FOR UPDATE`` (PostgreSQL; on SQLite the database's single writer), so every
process's grants are counted once. The arithmetic is ``tools/budget.py``'s, applied by
``workflows/budget.py``. PostgreSQL's dialect is imported only by a PostgreSQL store (it
costs a SQLite command about 20 ms at start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, and_, select, update

from closeguard.store.core import Store, dialect_insert, table_group

__all__ = ["BudgetRows", "WindowChange", "define"]

WindowChange = Callable[[dict[str, Any]], tuple[dict[str, Any], float]]
"""Old window -> (new window, a number to hand back)."""


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "rate_budget",
        metadata,
        Column("scope", String(64), primary_key=True),
        Column("grp", String(100), primary_key=True),
        Column("window_end", Float),
        Column("lim", Float),
        Column("span", Float, nullable=False),
        Column("used", Float, nullable=False),
    )


class BudgetRows:
    """Atomic changes of one scope's windows."""

    def __init__(self, store: Store, scope: str) -> None:
        self.store = store
        self.scope = scope
        self.t = store.tables.rate_budget

    def change(self, group: str, change: WindowChange) -> float:
        t = self.t
        key = and_(t.c.scope == self.scope, t.c.grp == group)
        with self.store.engine.begin() as conn:
            conn.execute(
                dialect_insert(self.store.dialect, t)
                .values(scope=self.scope, grp=group, span=1.0, used=0.0)
                .on_conflict_do_nothing(index_elements=["scope", "grp"])
            )
            row = conn.execute(select(t).where(key).with_for_update()).one()
            old = {"end": row.window_end, "limit": row.lim, "span": row.span, "used": row.used}
            new, result = change(old)
            if new != old:
                conn.execute(
                    update(t)
                    .where(key)
                    .values(
                        window_end=new["end"], lim=new["limit"], span=new["span"], used=new["used"]
                    )
                )
        return result
