"""The ``approvals`` table and its queries.

Rows are plain mappings (``args`` as canonical JSON text, ``approvers`` as a JSON list of
roles, NULL in rows made before roles: read as ``["admin"]``; times as epoch seconds); what a
status means (expiry included) is the guard's, in ``closeguard.guardrails.approvals``.
Every state change is one conditional statement, so two processes cannot both decide or
both use the same approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, Text, and_, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from closeguard.store.core import Store, table_group
from closeguard.store.records import ApprovalMoves

__all__ = ["ApprovalRows", "define"]

Row = dict[str, Any]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "approvals",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("call_hash", String(64), nullable=False, index=True),
        Column("status", String(20), nullable=False, index=True),
        Column("created", Float, nullable=False),
        Column("expires", Float, nullable=False),
        Column("policy", String(200)),
        Column("actor", String(200)),
        Column("run_id", String(200)),
        Column("endpoint", String(100), nullable=False),
        Column("method", String(10), nullable=False),
        Column("path", Text, nullable=False),
        Column("access", String(20)),
        Column("rule", String(300)),
        Column("reason", Text),
        Column("args", Text, nullable=False),
        Column("decided_by", String(200)),
        Column("decided_at", Float),
        Column("note", Text),
        Column("consumed_at", Float),
        Column("approvers", Text),
    )


class ApprovalRows(ApprovalMoves):
    """Reads and conditional updates of ``approvals`` rows in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.tables.approvals

    def _live(self, digest: str, status: str, now: float) -> Row | None:
        """The oldest row for ``digest`` in ``status`` that has not expired at ``now``."""
        t = self.t
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(t)
                .where(and_(t.c.call_hash == digest, t.c.status == status, t.c.expires > now))
                .order_by(t.c.created)
                .limit(1)
            ).first()
        return dict(row._mapping) if row else None

    def open_or_insert(self, values: Mapping[str, Any], now: float) -> Row:
        """The open (pending, unexpired) row for ``values["call_hash"]``, else ``values``
        inserted as a new row; one transaction, so a request is not duplicated."""
        t = self.t
        with self.store.engine.begin() as conn:
            found = conn.execute(
                select(t)
                .where(
                    and_(
                        t.c.call_hash == values["call_hash"],
                        t.c.status == "pending",
                        t.c.expires > now,
                    )
                )
                .order_by(t.c.created)
                .limit(1)
            ).first()
            if found is not None:
                return dict(found._mapping)
            conn.execute(t.insert().values(**values))
        row = self.get(str(values["id"]))
        assert row is not None
        return row

    def get(self, approval_id: str) -> Row | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(self.t).where(self.t.c.id == approval_id)).first()
        return dict(row._mapping) if row else None

    def by_status(self, status: str | None, now: float, *, limit: int) -> list[Row]:
        """Newest first; ``status`` is the effective one at ``now``: a pending or approved
        request past its expiry is ``expired`` (None: every row)."""
        t = self.t
        where: ColumnElement[bool] | None = None
        if status in ("pending", "approved"):
            where = and_(t.c.status == status, t.c.expires > now)
        elif status == "expired":
            where = or_(
                and_(t.c.status.in_(("pending", "approved")), t.c.expires <= now),
                t.c.status == "expired",
            )
        elif status is not None:
            where = t.c.status == status
        query = select(t).order_by(t.c.created.desc())
        if where is not None:
            query = query.where(where)
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.limit(limit)).all()]

    def due(self, now: float, *, limit: int = 500) -> tuple[str, ...]:
        """Ids of pending rows past their expiry at ``now``, oldest first."""
        t = self.t
        query = (
            select(t.c.id)
            .where(and_(t.c.status == "pending", t.c.expires <= now))
            .order_by(t.c.expires)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            return tuple(str(r.id) for r in conn.execute(query).all())

    def expire(self, approval_id: str, now: float) -> bool:
        """Record a pending row past its expiry as ``expired``; False if it was not one
        (another process recorded it, or a person answered just in time)."""
        t = self.t
        with self.store.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(t)
                    .where(and_(t.c.id == approval_id, t.c.status == "pending", t.c.expires <= now))
                    .values(status="expired", decided_at=now)
                ).rowcount
            )

    def _move(self, approval_id: str, current: str, now: float, /, **values: Any) -> bool:
        t = self.t
        with self.store.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(t)
                    .where(and_(t.c.id == approval_id, t.c.status == current, t.c.expires > now))
                    .values(**values)
                ).rowcount
            )
