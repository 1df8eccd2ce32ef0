"""Schema versions of the store, as Alembic revisions run on open.

``upgrade(engine, metadata)`` brings a store to the newest revision: the same revisions
serve SQLite and PostgreSQL (``versions/``; a revision may apply to one dialect only). A
store made before versions existed (by ``create_all``) is adopted: the baseline creates only
what is missing, then stamps it. On PostgreSQL an advisory lock serializes processes that
open the same store at once, so several ``closeguard run`` starting together migrate once.
A store already at the newest revision only gets the tables of groups added since (as
before), at the cost of one version read.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, text

__all__ = ["current", "head", "upgrade"]

LOCATION = Path(__file__).parent


@functools.cache
def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(LOCATION))
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision."""
    found = _script().get_current_head()
    assert found is not None
    return found


def _opts(schema: str | None) -> dict[str, object]:
    return {"version_table_schema": schema} if schema else {}


def current(conn: Connection, schema: str | None = None) -> str | None:
    """The revision the store at ``conn`` is at (None: not versioned yet)."""
    return MigrationContext.configure(conn, opts=_opts(schema)).get_current_revision()


def _lock(conn: Connection, schema: str | None) -> None:
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"closeguard-migrate:{schema or ''}".encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def upgrade(engine: Engine, metadata: MetaData) -> str | None:
    """Migrate the store to the newest revision; the revision it was at before."""
    schema = metadata.schema
    script = _script()
    with engine.begin() as conn:
        _lock(conn, schema)
        before = current(conn, schema)
        if before == head():
            metadata.create_all(conn, checkfirst=True)
            return before

        def steps(rev: Any, _context: Any) -> Any:
            return script._upgrade_revs("head", rev)

        with EnvironmentContext(_config(), script, fn=steps, destination_rev="head") as env:
            env.configure(connection=conn, target_metadata=metadata, **_opts(schema))  # type: ignore[arg-type]
            env.run_migrations(metadata=metadata)
    return before
