"""Where event intake stands: named positions (the Event Log catch-up's) and the webhook
subscriptions this installation manages, with their signature keys.

Two tables:

- ``cursors``: ``name -> value`` (text), e.g. ``catchup.event_log`` -> the ISO time up to
  which the Event Log has been read into the inbox;
- ``webhook_subscriptions``: one row per Close subscription created by
  ``closeguard webhooks sync``: its id, URL, events and ``signature_key``.

A signature key is a secret: it is stored here because the receiver needs it, and nothing
in this module prints, logs or ``repr``s it. The sync methods run on the caller's thread
(the CLI); async callers use the ``a``-prefixed ones, which run on the store's worker
thread (``Store.run``) so the event loop is never blocked by the database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Column, Float, MetaData, String, Table, Text, delete, select
from sqlalchemy.sql.expression import Executable

from closeguard.store.core import Store, dialect_insert, table_group

__all__ = ["CATCHUP_POSITION", "Cursors", "StoredSubscription", "define"]

CATCHUP_POSITION = "catchup.event_log"


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "cursors",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("value", Text, nullable=False),
        Column("updated", Float, nullable=False),
    )
    Table(
        "webhook_subscriptions",
        metadata,
        Column("id", String(100), primary_key=True),
        Column("url", Text, nullable=False),
        Column("events", Text, nullable=False),
        Column("signature_key", Text, nullable=False),
        Column("updated", Float, nullable=False),
    )


EventPair = tuple[str, str]


@dataclass(frozen=True)
class StoredSubscription:
    """A subscription this installation created: id, URL, (object_type, action) pairs, key."""

    id: str
    url: str
    events: tuple[EventPair, ...]
    signature_key: str = field(repr=False)


class Cursors:
    """Queries on ``cursors`` and ``webhook_subscriptions`` in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cursors = store.tables["cursors"]
        self.subs = store.tables["webhook_subscriptions"]

    # -- named positions ---------------------------------------------------------------

    def get(self, name: str) -> str | None:
        t = self.cursors
        with self.store.engine.connect() as conn:
            value = conn.execute(select(t.c.value).where(t.c.name == name)).scalar()
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(self._upsert(self.cursors, "name", name=name, value=value))

    async def aget(self, name: str) -> str | None:
        return await self.store.run(self.get, name)

    async def aset(self, name: str, value: str) -> None:
        await self.store.run(self.set, name, value)

    # -- subscriptions -----------------------------------------------------------------

    def subscriptions(self) -> list[StoredSubscription]:
        t = self.subs
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.updated)).all()
        return [
            StoredSubscription(
                id=r.id,
                url=r.url,
                events=tuple((str(o), str(a)) for o, a in json.loads(r.events)),
                signature_key=r.signature_key,
            )
            for r in rows
        ]

    def subscription_for(self, url: str) -> StoredSubscription | None:
        """The newest stored subscription delivering to ``url``."""
        matching = [s for s in self.subscriptions() if s.url == url]
        return matching[-1] if matching else None

    def save_subscription(self, sub: StoredSubscription) -> None:
        events = json.dumps([list(pair) for pair in sub.events])
        row = {"url": sub.url, "events": events, "signature_key": sub.signature_key}
        with self.store.engine.begin() as conn:
            conn.execute(self._upsert(self.subs, "id", id=sub.id, **row))

    def forget_subscription(self, subscription_id: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(delete(self.subs).where(self.subs.c.id == subscription_id))

    def signature_keys(self) -> list[str]:
        """Every stored key (the receiver accepts a delivery signed by any of them)."""
        with self.store.engine.connect() as conn:
            keys = conn.execute(select(self.subs.c.signature_key)).scalars().all()
        return [str(k) for k in keys]

    async def asubscriptions(self) -> Sequence[StoredSubscription]:
        return await self.store.run(self.subscriptions)

    async def asave_subscription(self, sub: StoredSubscription) -> None:
        await self.store.run(self.save_subscription, sub)

    async def aforget_subscription(self, subscription_id: str) -> None:
        await self.store.run(self.forget_subscription, subscription_id)

    # -- helpers -----------------------------------------------------------------------

    def _upsert(self, table: Table, key: str, **values: str) -> Executable:
        row = {**values, "updated": time.time()}
        changed = {k: v for k, v in row.items() if k != key}
        insert = dialect_insert(self.store.dialect, table).values(**row)
        return insert.on_conflict_do_update(  # type: ignore[no-any-return]
            index_elements=[table.c[key]], set_=changed
        )
