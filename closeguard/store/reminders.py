"""The ``approval_reminders`` table: which approval requests have had their reminder.

A reminder goes out once per request, whichever process finds it half-way to expiry
first: ``claim`` is one insert on the primary key, so two processes cannot both win.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from closeguard.store.core import Store, table_group

__all__ = ["ReminderRows", "define"]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "approval_reminders",
        metadata,
        Column("approval_id", String(64), primary_key=True),
        Column("sent_at", Float, nullable=False),
    )


class ReminderRows:
    """Claims of ``approval_reminders`` rows in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.tables.approval_reminders

    def claim(self, approval_id: str, now: float) -> bool:
        """True for the one caller that records ``approval_id``'s reminder first."""
        try:
            with self.store.engine.begin() as conn:
                conn.execute(self.t.insert().values(approval_id=approval_id, sent_at=now))
        except IntegrityError:
            return False
        return True

    def sent(self, approval_ids: list[str]) -> set[str]:
        """Which of ``approval_ids`` have had their reminder."""
        if not approval_ids:
            return set()
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(self.t.c.approval_id).where(self.t.c.approval_id.in_(approval_ids))
            )
            return {r[0] for r in rows}
