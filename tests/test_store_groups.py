"""Table groups: a module's ``@table_group define(metadata)`` is all the store needs."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect, text

from closeguard.store import Store, Tables, core, store_problem

PG_URL = os.environ.get("CLOSEGUARD_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")


def _widgets(metadata: MetaData) -> None:
    Table("widgets", metadata, Column("id", String(20), primary_key=True))


@pytest.fixture
def widgets_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "_GROUPS", dict(core._GROUPS))
    core.table_group(_widgets)


def test_the_guard_groups_are_registered() -> None:
    names = set(Tables().metadata.tables)
    assert {"audit", "audit_head", "approvals", "quota_counters"} <= names
    assert Tables().audit.name == "audit" and Tables()["approvals"].name == "approvals"
    with pytest.raises(AttributeError, match="no table 'nope'"):
        _ = Tables().nope


def test_a_registered_group_is_created_with_the_store(tmp_path: Path, widgets_group: None) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        assert "widgets" in inspect(store.engine).get_table_names()
        with store.engine.begin() as conn:
            conn.execute(store.tables.widgets.insert().values(id="w1"))
    finally:
        store.dispose()


def test_opening_an_older_store_adds_a_new_groups_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).dispose()
    monkeypatch.setattr(core, "_GROUPS", dict(core._GROUPS))
    core.table_group(_widgets)
    assert store_problem(url) is None
    store = Store(url, create=False)
    try:
        assert "widgets" in inspect(store.engine).get_table_names()
    finally:
        store.dispose()


def test_a_group_lands_in_the_postgres_schema(widgets_group: None) -> None:
    schema = f"cg_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        store = Store(PG_URL, schema=schema)
        try:
            assert "widgets" in inspect(store.engine).get_table_names(schema=schema)
            assert store.tables.widgets.schema == schema
        finally:
            store.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
