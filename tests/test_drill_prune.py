"""Drill: prune again and again, with the cutoff at *now*, while the runtime takes
duplicated, reordered webhook deliveries and its workers write through the guard; then
the chain and the archives verify, together they hold every audit row exactly once, every
lead got exactly one task, and the unfinished runs and the open approval are untouched.
On SQLite (one file, a thread pruning beside the event loop) and PostgreSQL (the job
engine's queue, procrastinate's jobs pruned with their runs)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from sqlalchemy import select, text

from closeguard.guardrails import AuditLog
from closeguard.guardrails.archive import verify_archive
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.simulator.faults import FaultConfig, WebhookFaults
from closeguard.store import Store
from closeguard.store.runs import ACTIVE
from closeguard.workflows.retention import PruneReport, prune
from closeguard.workflows.runtime import Runtime, RuntimeConfig
from tests._pg import schema_store
from tests._retention import archives, seed
from tests.test_wf_runtime import TASKER, until, welcome_tasks

LEADS = 40


@pytest.fixture(params=["sqlite", "postgresql"])
def drill_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        yield store
        store.dispose()
        return
    with schema_store("cgdrill_") as store:
        yield store


def _pruning(store: Store, folder: Path, stop: threading.Event) -> list[PruneReport]:
    """Prune with the cutoff at now until ``stop``, then once more."""
    reports: list[PruneReport] = []
    while True:
        last = stop.is_set()
        reports.append(prune(store, datetime.now(UTC), archive_dir=folder))
        if last:
            return reports


def _active(store: Store) -> int:
    """Runs of the soak's workflow not finished yet."""
    t = store.tables.runs
    query = select(t.c.id).where(t.c.workflow == TASKER.name, t.c.status.in_(ACTIVE))
    with store.engine.connect() as conn:
        return len(conn.execute(query).all())


def _statuses(store: Store, ids: list[str]) -> dict[str, str]:
    t = store.tables.runs
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.status).where(t.c.id.in_(ids)))
        return {str(r.id): str(r.status) for r in rows}


async def test_prune_while_workers_run_loses_and_doubles_nothing(
    drill_store: Store, tmp_path: Path
) -> None:
    store = drill_store
    seeded = seed(store, old_runs=30, old_audit=500, pin=False)
    unfinished_before = _statuses(store, seeded.unfinished)
    folder = tmp_path / "archive"
    faults = FaultConfig(
        webhooks=WebhookFaults(duplicate=0.5, reorder=0.3, reorder_hold_seconds=0.2)
    )
    sim = Simulator(seed=11, leads=2, faults=faults)
    runtime = Runtime(
        [TASKER],
        store=store,
        checkpointer=InMemorySaver(),
        api_key=sim.api_key,
        transport=sim.transport(),
        base_url=BASE_URL,
        config=RuntimeConfig(
            listen=("127.0.0.1", 0), subscribe=True, poll=0.05, catchup=False, concurrency=4
        ),
    )
    stop, halt = asyncio.Event(), threading.Event()
    task = asyncio.create_task(runtime.run(stop))
    pruner: asyncio.Future[list[PruneReport]] | None = None
    try:
        await asyncio.wait_for(runtime.ready.wait(), 20)
        sim.webhooks.start()
        pruner = asyncio.ensure_future(asyncio.to_thread(_pruning, store, folder, halt))
        async with sim.client() as client:
            leads = []
            for n in range(LEADS):
                leads.append((await client.leads.create({"name": f"Soak {n}"})).id)
        await until(lambda: len(welcome_tasks(sim)) == LEADS and not sim.webhooks.pending, 60)
        await until(lambda: not _active(store), 30)
    finally:
        halt.set()
        reports = await pruner if pruner is not None else []
        stop.set()
        await asyncio.wait_for(task, 30)
        await sim.webhooks.stop()

    assert len(reports) >= 2
    assert sorted(t["lead_id"] for t in welcome_tasks(sim)) == sorted(leads), "one task a lead"
    assert sum(r.runs for r in reports) >= 30 + 1, "the old runs and some new ones went"
    assert _statuses(store, seeded.unfinished) == unfinished_before
    approvals = store.tables.approvals
    with store.engine.connect() as conn:
        status = conn.execute(
            select(approvals.c.status).where(approvals.c.id == seeded.approval)
        ).scalar_one()
    assert status == "pending"

    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            orphans = conn.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs j WHERE NOT EXISTS "
                    "(SELECT 1 FROM runs r WHERE r.id = j.args->>'run_id')"
                )
            ).scalar_one()
        assert orphans == 0, "the jobs of pruned runs went with them"

    log = AuditLog(store)
    report = log.verify()
    assert report.ok, report.problems
    files = sorted(archives(folder), key=lambda p: int(p.name.split("-")[1]))
    assert len(files) >= 2, "audit rows were archived during the soak, more than once"
    proof = verify_archive(files, log)
    assert proof.ok and proof.first == 1, proof.problems
    archived = [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]
    kept = list(log.rows())
    seqs = [int(r["seq"]) for r in archived] + [int(r["seq"]) for r in kept]
    assert seqs == list(range(1, report.head_seq + 1)), "every audit row once, in order"
    assert proof.last is not None and report.first_seq == proof.last + 1
    creates = [r for r in archived + kept if r["endpoint"] == "task.create"]
    assert len(creates) == LEADS and {r["decision"] for r in creates} == {"allow"}
