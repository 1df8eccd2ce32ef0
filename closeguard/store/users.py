"""The ``users`` table: the people who answer approvals, and their token hashes.

Rows are plain mappings (``roles`` and ``notify`` as JSON text); what a token is and how it
is checked is the guard's, in ``closeguard.guardrails.accounts``. A token is never stored:
only its id (to find the row) and a salted hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Boolean, Column, Float, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from closeguard.store.core import Store, table_group

__all__ = ["UserRows", "define"]

Row = dict[str, Any]


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "users",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("roles", Text, nullable=False),
        Column("email", String(320), index=True),
        Column("disabled", Boolean, nullable=False, default=False),
        Column("notify", Text, nullable=False),
        Column("token_id", String(40), nullable=False, unique=True),
        Column("token_hash", String(300), nullable=False),
        Column("created", Float, nullable=False),
        Column("updated", Float, nullable=False),
    )


class UserRows:
    """Reads and writes of ``users`` rows in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.tables.users

    def insert(self, values: Mapping[str, Any]) -> bool:
        """Add a row; False if the name (or token id) is taken."""
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(self.t).values(**values))
        except IntegrityError:
            return False
        return True

    def get(self, name: str) -> Row | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(self.t).where(self.t.c.name == name)).first()
        return dict(row._mapping) if row else None

    def by_token_id(self, token_id: str) -> Row | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(self.t).where(self.t.c.token_id == token_id)).first()
        return dict(row._mapping) if row else None

    def by_email(self, email: str) -> list[Row]:
        """Rows whose (lower-cased) email is ``email``, by name."""
        query = select(self.t).where(self.t.c.email == email).order_by(self.t.c.name)
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def all(self) -> list[Row]:
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(self.t).order_by("name"))]

    def set(self, name: str, **values: Any) -> bool:
        """Update the named row; False if there is none."""
        with self.store.engine.begin() as conn:
            return bool(
                conn.execute(update(self.t).where(self.t.c.name == name).values(**values)).rowcount
            )
