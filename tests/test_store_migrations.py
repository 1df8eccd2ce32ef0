"""Schema versions: a new store is at the newest revision; one made by ``create_all``
before versions existed is adopted (rows kept) and stamped."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, insert, inspect, select

from closeguard.store import Store, Tables
from closeguard.store.migrations import current, head


def test_a_new_store_is_at_the_newest_revision(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'new.db'}")
    with store.engine.connect() as conn:
        assert current(conn) == head()
    assert store.revision_before is None
    store.dispose()
    again = Store(f"sqlite:///{tmp_path / 'new.db'}")
    assert again.revision_before == head()
    again.dispose()


def test_a_store_made_before_versions_is_adopted_with_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    tables = Tables()
    tables.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.audit_head).values(id=1, seq=7, hash="h" * 64, updated="x"))
    assert "alembic_version" not in inspect(engine).get_table_names()
    engine.dispose()
    store = Store(url, create=False)
    with store.engine.connect() as conn:
        assert current(conn) == head()
        kept = conn.execute(select(store.tables.audit_head.c.seq)).scalar()
    assert kept == 7 and store.revision_before is None
    store.dispose()
