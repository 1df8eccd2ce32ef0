"""``Store.run``: store work from async code happens on the store's thread, not the loop's."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from closeguard.store import Store


async def test_run_uses_one_worker_thread_and_returns_the_result(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        names = await asyncio.gather(
            *(store.run(lambda: threading.current_thread()) for _ in "abc")
        )
        assert len({id(t) for t in names}) == 1
        assert names[0] is not threading.current_thread()
        assert names[0].name.startswith("closeguard-store")
        assert await store.run(divmod, 7, 2) == (3, 1)
        with pytest.raises(ZeroDivisionError):
            await store.run(divmod, 1, 0)
    finally:
        store.dispose()


async def test_an_in_memory_store_is_the_same_database_on_the_worker() -> None:
    store = Store("sqlite://")
    try:
        with store.engine.begin() as conn:
            conn.execute(
                store.tables.quota_counters.insert().values(key="k", window_start=0, count=3)
            )

        def count() -> int:
            with store.engine.connect() as conn:
                return len(conn.execute(store.tables.quota_counters.select()).all())

        assert await store.run(count) == 1
    finally:
        store.dispose()
