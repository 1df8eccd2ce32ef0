"""``closeguard --store postgresql://...``: the run commands work on the scale-out store as
on SQLite (marked ``postgres``; a fresh database)."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.store import Store
from closeguard.workflows.queue import RunRequest
from closeguard.workflows.queue_pg import ProcrastinateRunQueue, queue_for
from tests._pg import fresh_database

pytestmark = pytest.mark.postgres


def test_runs_list_and_retry_on_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", "sqlite:///unused-by-this-test.db")
    runner = CliRunner()
    with fresh_database() as url:
        store = Store(url)
        queue = queue_for(store)
        assert isinstance(queue, ProcrastinateRunQueue)

        async def fail_one() -> None:
            await queue.enqueue([RunRequest("wf", "e1", "event", {}, "lead_1", id="run_pg1")])
            assert await queue.claim("w") is not None
            await queue.fail("run_pg1", "w", "boom", transient=False)

        asyncio.run(fail_one())
        listed = runner.invoke(app, ["--store", url, "runs", "list"])
        assert listed.exit_code == 0, listed.output
        assert "run_pg1" in listed.output and "failed" in listed.output
        retried = runner.invoke(app, ["--store", url, "runs", "retry", "run_pg1"])
        assert retried.exit_code == 0, retried.output
        again = asyncio.run(queue.claim("w2"))
        assert again is not None and again.id == "run_pg1", "back in procrastinate's queue"
        store.dispose()
