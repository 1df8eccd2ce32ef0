"""Scale-out on PostgreSQL with real processes (marked ``postgres``; a fresh database each).

- three worker processes and one receiver process handle 400 webhook events (40 leads of
  10): every run done exactly once, each lead's events in order, while one worker (which
  holds each run 0.2 s) is SIGKILLed as the store shows it holding a run, and another
  started; the same processes also fire one schedule, and each tick runs once. (It handled
  2,000 events before issue 23; 400 keep the lanes busy through the kill, and per-lead
  order is tested across the hand-over of the killed worker's run, at a fifth of the
  suite's time: ``bench/scale.py`` measures the volume);
- four workers sharing the Close rate budget of one key (20 requests/s on the served
  simulator) get no 429, and the audit chain they wrote together verifies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from closeguard.guardrails import AuditLog
from closeguard.simulator import Simulator
from closeguard.simulator.ratelimit import RateLimits
from closeguard.store import Store
from closeguard.store.cursors import Cursors, StoredSubscription
from closeguard.tools.webhooks import compute_signature
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue_pg import ProcrastinateRunQueue, queue_for
from tests._pg import fresh_database
from tests._scale_cluster import Cluster, prepare
from tests._scale_proc import WORKFLOWS
from tests._secrets import signature_key
from tests._serve import served

pytestmark = pytest.mark.postgres

KEY = signature_key(1)
LEADS, PER_LEAD = 40, 10
KILL_AFTER = 100


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def _count(store: Store, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


def _event(lead: int, n: int) -> dict[str, Any]:
    lead_id = f"lead_{lead:03d}"
    return {
        "id": f"ev_{lead:03d}_{n:02d}",
        "object_type": "lead",
        "action": "updated",
        "lead_id": lead_id,
        "data": {"lead_id": lead_id, "n": n},
    }


async def _post(http: httpx.AsyncClient, url: str, body: str) -> httpx.Response:
    """POST as Close does: a delivery whose connection broke is sent again (the receiver
    deduplicates by event id); on a busy machine a kept-alive connection can be closed by
    the receiver just as a delivery goes out on it."""
    for attempt in range(3):
        stamp = str(int(time.time()))
        sig = compute_signature(KEY, stamp, body.encode())
        headers = {"close-sig-timestamp": stamp, "close-sig-hash": sig}
        try:
            return await http.post(url, content=body, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _deliver(url: str, leads: range) -> None:
    """Each lead's events one after another (so the receiver gets them in order)."""
    async with httpx.AsyncClient(timeout=30) as http:

        async def lane(lead: int) -> None:
            for n in range(PER_LEAD):
                body = json.dumps({"subscription_id": "whsub_s", "event": _event(lead, n)})
                response = await _post(http, url, body)
                assert response.status_code == 200, response.text

        await asyncio.gather(*(lane(lead) for lead in leads))


async def _until(check: Any, *, within: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(poll)


async def test_events_run_once_in_lead_order_across_a_killed_worker_and_ticks_once(
    database: str, tmp_path: Path
) -> None:
    store = prepare(database)
    sub = StoredSubscription("whsub_s", "http://r", (("lead", "updated"),), signature_key=KEY)
    Cursors(store).save_subscription(sub)
    cluster = Cluster(tmp_path, database)
    names = "scale-log,scale-tick"
    done = "SELECT count(*) FROM runs WHERE workflow = 'scale-log' AND status = 'completed'"
    try:
        cluster.start("worker,scheduler", names, count=2)
        # The worker to be killed holds each run 0.2 s, and is killed while the store shows
        # it holding one: a run of its own is then always left for the others to take over
        # (with quick runs it could be between two at the kill, and nothing was retaken).
        ((doomed, _),) = cluster.start("worker,scheduler", names, CG_HOLD="0.2")
        ((_, receiver_url),) = cluster.start("receiver", names)
        first = time.time()
        delivering = asyncio.create_task(_deliver(receiver_url, range(LEADS)))
        await _until(lambda: _count(store, done) >= KILL_AFTER, within=90, what="first runs")
        holding = (
            "SELECT count(*) FROM runs WHERE workflow = 'scale-log' AND status = 'running' "
            f"AND worker LIKE '%\\:{cluster.pid(doomed)}'"  # text(): \\: is a colon
        )
        await _until(lambda: _count(store, holding) >= 1, within=30, what="a held run", poll=0.02)
        cluster.kill(doomed)
        cluster.start("worker,scheduler", names)
        await delivering
        total = LEADS * PER_LEAD
        await _until(lambda: _count(store, done) >= total, within=120, what="every run")
        last = time.time()
    finally:
        cluster.close()
    with store.engine.connect() as conn:
        runs = Counter(tuple(r) for r in conn.execute(text("SELECT workflow, status FROM runs")))
        rows = conn.execute(text("SELECT run_id, lead, n, tick FROM scale_log ORDER BY id")).all()
    assert runs[("scale-log", "completed")] == total
    retaken = "SELECT count(*) FROM runs WHERE workflow = 'scale-log' AND attempts > 1"
    assert _count(store, retaken) >= 1, "the killed worker's runs were taken over"
    events = [r for r in rows if r.tick is None]
    assert len(events) == total and len({r.run_id for r in events}) == total
    order: dict[str, list[int]] = defaultdict(list)
    for r in events:
        order[r.lead].append(r.n)
    assert all(ns == list(range(PER_LEAD)) for ns in order.values()), "per-lead order"
    ticks = [r.tick for r in rows if r.tick is not None]
    assert len(ticks) == len(set(ticks)) >= min(3, int(last - first) // 2), "each tick once"
    assert runs[("scale-tick", "completed")] == len(ticks)
    store.dispose()


async def test_four_workers_share_one_rate_budget_and_audit_one_chain(
    database: str, tmp_path: Path
) -> None:
    store = prepare(database)
    sim = Simulator(seed=3, leads=5, rate_limits=RateLimits(rps=20))
    statuses: Counter[int] = Counter()

    async def counting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def record(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1
            await send(message)

        await sim.app(scope, receive, record)

    runs = 120
    inbox = Inbox(store, [WORKFLOWS["scale-call"]], queue_for(store))
    assert isinstance(inbox.queue, ProcrastinateRunQueue)
    await inbox.add_many([_event(i, 0) for i in range(runs)], source="test")
    async with served(counting) as base:
        cluster = Cluster(tmp_path, database, CG_API_KEY=sim.api_key, CG_BASE_URL=base + "/api/v1")
        done = "SELECT count(*) FROM runs WHERE status IN ('completed', 'failed', 'dead')"
        try:
            cluster.start("worker", "scale-call", count=4)
            await _until(lambda: _count(store, done) >= runs, within=60, what="every run")
        finally:
            cluster.close()
    assert _count(store, "SELECT count(*) FROM runs WHERE status = 'completed'") == runs
    assert statuses[200] >= runs and statuses[429] == 0, statuses
    workers = _count(store, "SELECT count(DISTINCT worker) FROM runs")
    assert workers == 4, "all four processes took part"
    log = AuditLog(store)
    report = log.verify()
    assert report.ok, report.problems[:3]
    assert log.head()[0] == statuses[200]
    store.dispose()
