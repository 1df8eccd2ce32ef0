"""A fresh PostgreSQL database per test run (``closeguard_test_<random>``), dropped after.

PostgreSQL runs on every machine of this project, CI included (127.0.0.1:5432, trust
auth); ``CLOSEGUARD_TEST_PG_URL`` points elsewhere. An unreachable server fails the test:
these tests must never pass by being skipped.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, text

from closeguard.store import Store

ADMIN_URL = os.environ.get("CLOSEGUARD_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it (and its sessions) afterwards."""
    name = f"closeguard_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}")
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def schema_store(prefix: str) -> Iterator[Store]:
    """Yield a ``Store`` in a new schema ``<prefix><random>`` of the test database; drop the
    schema afterwards."""
    schema = f"{prefix}{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}")
    store = Store(ADMIN_URL, schema=schema)
    try:
        yield store
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
