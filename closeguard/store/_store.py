"""The ``Store``: one SQLAlchemy engine and the tables closeguard persists to.

SQLite (the default, a file in the user data dir, created on first use) or PostgreSQL
(``postgresql://…`` is run with psycopg 3). Tables are created on first use; a ``schema``
puts them in a PostgreSQL schema of their own (used by tests and side-by-side installs).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from closeguard.tools.errors import StoreError

__all__ = ["Store", "Tables", "default_store", "normalize_url"]

from closeguard.tools.settings import Settings

def normalize_url(url: str | URL) -> URL:
    """Pin the psycopg 3 driver for PostgreSQL and make a SQLite file's folder exist."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed


class Tables:
    """The table objects, built against one ``MetaData`` (optionally in a schema)."""

    def __init__(self, schema: str | None = None) -> None:
        self.metadata = MetaData(schema=schema)
        self.audit = Table(
            "audit",
            self.metadata,
            Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                   autoincrement=False),
            Column("ts", String(40), nullable=False),
            Column("actor", String(200)),
            Column("run_id", String(200)),
            Column("call_id", String(100)),
            Column("attempt", Integer),
            Column("policy", String(200)),
            Column("endpoint", String(100)),
            Column("method", String(10), nullable=False),
            Column("path", Text, nullable=False),
            Column("access", String(20)),
            Column("decision", String(30), nullable=False),
            Column("rule", String(300)),
            Column("reason", Text),
            Column("args", Text, nullable=False),
            Column("status_code", Integer),
            Column("latency_us", BigInteger),
            Column("error", Text),
            Column("approval_id", String(64)),
            Column("prev_hash", String(64), nullable=False),
            Column("hash", String(64), nullable=False),
        )
        self.audit_head = Table(
            "audit_head",
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("seq", BigInteger, nullable=False),
            Column("hash", String(64), nullable=False),
            Column("updated", String(40), nullable=False),
        )
        self.approvals = Table(
            "approvals",
            self.metadata,
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
        )
        self.quota = Table(
            "quota_counters",
            self.metadata,
            Column("key", String(400), primary_key=True),
            Column("window_start", BigInteger, primary_key=True, autoincrement=False),
            Column("count", Integer, nullable=False),
        )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _shown(url: str | URL) -> str:
    """The URL fit to print: password hidden, or nothing if it cannot even be parsed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<an unparseable URL>"


class Store:
    """An engine plus closeguard's tables, created on first use."""

    def __init__(self, url: str | URL | None = None, *, schema: str | None = None) -> None:
        if url is None:
            url = Settings().store_url
        try:
            self.url = normalize_url(url)
            self.schema = schema
            self.engine: Engine = create_engine(self.url, future=True)
            if self.dialect == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            self.tables = Tables(schema)
            self.tables.metadata.create_all(self.engine, checkfirst=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(
                f"cannot open the store at {_shown(url)} (CLOSEGUARD_STORE_URL): "
                f"{str(reason).splitlines()[0]}"
            ) from exc

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def drop_all(self) -> None:
        """Drop closeguard's tables (tests, ``reset``)."""
        self.tables.metadata.drop_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"


_default: dict[str, Store] = {}
_default_lock = threading.Lock()


def default_store(*, create: bool = True) -> Store:
    """The process-wide store for ``CLOSEGUARD_STORE_URL`` (one per URL); with
    ``create=False``, only one that already exists (else ``StoreError``)."""
    url = Settings().store_url
    with _default_lock:
        if url not in _default:
            _default[url] = Store(url)
        return _default[url]
