"""Schema versions of the store, as Alembic revisions run on open.

``upgrade(engine, metadata)`` brings a store to the newest revision: the same revisions
serve SQLite and PostgreSQL (``versions/``; a revision may apply to one dialect only). A
store made before versions existed (by ``create_all``) is adopted: the baseline creates only
what is missing, then stamps it. On PostgreSQL an advisory lock serializes processes that
open the same store at once, so several ``closeguard run`` starting together migrate once.
A store already at the newest revision only gets the tables of groups added since (as
before), at the cost of one version read: the newest revision is read from the files of
``versions/`` and the store's from its ``alembic_version`` row, so Alembic is imported only
when there is something to migrate (a command that reads the store starts faster), and
SQLAlchemy only by the functions that use it (``head`` needs neither).
"""

from __future__ import annotations

import functools
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection, Engine, MetaData

__all__ = ["current", "head", "upgrade"]

LOCATION = Path(__file__).parent
VERSION_TABLE = "alembic_version"
_REVISION = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision\b[^=\n]*=(.*)$", re.M)


@functools.cache
def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(LOCATION))
    return config


@functools.cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


@functools.cache
def head() -> str:
    """The newest revision: the one of ``versions/`` that no other names as its parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (LOCATION / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found, down = _REVISION.search(text), _DOWN.search(text)
        if found is None or down is None:
            continue
        revisions.add(found.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    assert len(heads) == 1, f"the store's revisions must have one head, not {sorted(heads)}"
    return heads.pop()


def _opts(schema: str | None) -> dict[str, object]:
    return {"version_table_schema": schema} if schema else {}


def current(conn: Connection, schema: str | None = None) -> str | None:
    """The revision the store at ``conn`` is at (None: not versioned yet), read from the
    version table as Alembic keeps it."""
    from sqlalchemy import column, inspect, select, table

    if not inspect(conn).has_table(VERSION_TABLE, schema=schema):
        return None
    version = table(VERSION_TABLE, column("version_num"), schema=schema)
    rows = conn.execute(select(version.c.version_num)).scalars().all()
    assert len(rows) <= 1, f"the store is at several revisions: {rows}"
    return rows[0] if rows else None


def _lock(conn: Connection, schema: str | None) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy import text

        key = zlib.crc32(f"closeguard-migrate:{schema or ''}".encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def upgrade(engine: Engine, metadata: MetaData) -> str | None:
    """Migrate the store to the newest revision; the revision it was at before."""
    schema = metadata.schema
    with engine.begin() as conn:
        _lock(conn, schema)
        before = current(conn, schema)
        if before == head():
            metadata.create_all(conn, checkfirst=True)
            return before

        from alembic.runtime.environment import EnvironmentContext

        script = _script()

        def steps(rev: Any, _context: Any) -> Any:
            return script._upgrade_revs("head", rev)

        with EnvironmentContext(_config(), script, fn=steps, destination_rev="head") as env:
            env.configure(connection=conn, target_metadata=metadata, **_opts(schema))  # type: ignore[arg-type]
            env.run_migrations(metadata=metadata)
    return before
