"""Schema versions: a new store is at the newest revision; one made by ``create_all``
before versions existed is adopted (rows kept) and stamped."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, insert, inspect, select, text

from closeguard.store import Store, Tables
from closeguard.store.migrations import current, head
from closeguard.store.runs import RunRows
from closeguard.workflows.queue_pg import ProcrastinateRunQueue, queue_for
from tests._pg import fresh_database


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


async def test_a_postgresql_store_of_the_embedded_queue_gets_jobs_for_its_runs() -> None:
    with fresh_database() as url:
        old = Store(url)
        with old.engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        old.tables.metadata.create_all(old.engine)
        rows = RunRows(old)
        rows.enqueue([_run("a1", "lead_a"), _run("a2", "lead_a"), _run("b1", "lead_b")])
        assert rows.claim("w", 60.0) is not None
        old.dispose()
        store = Store(url)
        queue = queue_for(store, lease=60.0)
        assert isinstance(queue, ProcrastinateRunQueue) and store.revision_before is None
        claimed = [await queue.claim("w2"), await queue.claim("w2")]
        assert [r.id if r else None for r in claimed] == ["run_b1", None], "a2 waits for a1"
        await queue.fail("run_a1", "w", "boom", transient=False)
        assert (await queue.claim("w2")) is not None
        store.dispose()


def _run(key: str, lead: str) -> dict[str, object]:
    return {
        "id": f"run_{key}",
        "workflow": "wf",
        "trigger_key": key,
        "kind": "event",
        "payload": {},
        "lead_id": lead,
    }
