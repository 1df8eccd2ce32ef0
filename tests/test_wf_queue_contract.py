"""The run-queue contract: one suite, run against every ``RunQueue`` implementation.

The embedded SQL queue runs on SQLite and on PostgreSQL, and procrastinate's job engine
(the scale-out queue) on PostgreSQL. Each factory gets a temporary folder and a fake
clock and yields a fresh, empty queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from closeguard.store import Store
from closeguard.tools.clock import FakeClock
from closeguard.workflows.queue import Backoff, RunQueue, RunRequest, SqlRunQueue
from closeguard.workflows.queue_pg import ProcrastinateRunQueue
from tests._pg import schema_store

BACKOFF = Backoff(max_attempts=3, base=10.0, cap=60.0)
LEASE = 30.0


@contextlib.contextmanager
def sqlite_queue(tmp_path: Path, clock: FakeClock) -> Iterator[RunQueue]:
    store = Store(f"sqlite:///{tmp_path / 'queue.db'}")
    yield SqlRunQueue(store, clock=clock, backoff=BACKOFF, lease=LEASE)
    store.dispose()


@contextlib.contextmanager
def postgresql_queue(
    tmp_path: Path, clock: FakeClock, kind: type[SqlRunQueue] = SqlRunQueue
) -> Iterator[RunQueue]:
    """The same SQL queue on PostgreSQL, in a schema of its own dropped afterwards."""
    with schema_store("cg_queue_") as store:
        yield kind(store, clock=clock, backoff=BACKOFF, lease=LEASE)


def procrastinate_queue(tmp_path: Path, clock: FakeClock) -> AbstractContextManager[RunQueue]:
    """procrastinate's job engine on PostgreSQL (the scale-out queue)."""
    return postgresql_queue(tmp_path, clock, ProcrastinateRunQueue)


IMPLEMENTATIONS: dict[str, Callable[[Path, FakeClock], AbstractContextManager[RunQueue]]] = {
    "sqlite": sqlite_queue,
    "sql-on-postgresql": postgresql_queue,
    "procrastinate": procrastinate_queue,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto_advance=False)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def queue(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[RunQueue]:
    with IMPLEMENTATIONS[request.param](tmp_path, clock) as made:
        yield made


def req(key: str, lead: str | None = None, workflow: str = "wf", **kw: Any) -> RunRequest:
    run_id = f"r-{key}" if workflow == "wf" else f"r-{workflow}-{key}"
    return RunRequest(workflow, key, "event", {"event": {"id": key}}, lead_id=lead, id=run_id)


async def drain_ids(queue: RunQueue, worker: str = "w") -> list[str]:
    """Claim everything claimable now, in order, without settling."""
    ids = []
    while (run := await queue.claim(worker)) is not None:
        ids.append(run.id)
    return ids


async def test_enqueue_is_deduplicated_by_workflow_and_trigger_key(queue: RunQueue) -> None:
    assert await queue.enqueue([req("e1"), req("e2")]) == ["r-e1", "r-e2"]
    again = [RunRequest("wf", "e1", "event", {}, id="r-other"), req("e1", workflow="wf2")]
    assert await queue.enqueue(again) == ["r-wf2-e1"]
    assert sorted(r.id for r in await queue.list()) == ["r-e1", "r-e2", "r-wf2-e1"]


async def test_claims_come_in_queue_order_and_only_once(queue: RunQueue) -> None:
    await queue.enqueue([req(f"e{i}") for i in range(4)])
    assert await drain_ids(queue) == ["r-e0", "r-e1", "r-e2", "r-e3"]
    assert await queue.claim("w2") is None


async def test_runs_of_one_lead_wait_for_the_earlier_one(queue: RunQueue) -> None:
    await queue.enqueue([req("a1", "lead_a"), req("a2", "lead_a"), req("b1", "lead_b")])
    assert await drain_ids(queue) == ["r-a1", "r-b1"]
    await queue.complete("r-a1", "w", {"done": 1})
    assert await drain_ids(queue) == ["r-a2"]
    done = await queue.get("r-a1")
    assert done is not None and done.status == "completed" and done.state == {"done": 1}


async def test_transient_failures_back_off_then_dead_letter_keeping_the_error(
    queue: RunQueue, clock: FakeClock
) -> None:
    await queue.enqueue([req("x", "lead"), req("y", "lead")])
    delays = []
    for attempt in range(1, BACKOFF.max_attempts + 1):
        run = await queue.claim("w")
        assert run is not None and run.id == "r-x" and run.attempts == attempt
        failed = await queue.fail("r-x", "w", f"ServerError: 503 #{attempt}", transient=True)
        if failed.status == "dead":
            break
        assert failed.status == "queued"
        delays.append(failed.available_at - clock.now())
        assert await queue.claim("w") is None, "the retry holds its lead; y waits"
        clock.advance(failed.available_at - clock.now())
    assert delays == [10.0, 20.0]
    dead = await queue.get("r-x")
    assert dead is not None and dead.status == "dead" and dead.error == "ServerError: 503 #3"
    assert await drain_ids(queue) == ["r-y"], "a dead run no longer holds its lead"


async def test_an_attempt_that_progressed_is_not_counted_toward_the_dead_letter(
    queue: RunQueue, clock: FakeClock
) -> None:
    await queue.enqueue([req("x", "lead")])
    for _ in range(BACKOFF.max_attempts * 2):
        run = await queue.claim("w")
        assert run is not None and run.attempts == 1
        failed = await queue.fail("r-x", "w", "ServerError: 502", transient=True, progressed=True)
        assert (failed.status, failed.attempts) == ("queued", 0)
        clock.advance(failed.available_at - clock.now())
    statuses = []
    for _ in range(BACKOFF.max_attempts):
        await queue.claim("w")
        stuck = await queue.fail("r-x", "w", "ServerError: 503", transient=True)
        statuses.append(stuck.status)
        clock.advance(max(0.0, stuck.available_at - clock.now()))
    assert statuses == ["queued"] * (BACKOFF.max_attempts - 1) + ["dead"]


async def test_parking_for_an_approval_is_not_a_failed_attempt(queue: RunQueue) -> None:
    await queue.enqueue([req("a", "lead")])
    run = await queue.claim("w")
    assert run is not None and run.attempts == 1
    await queue.wait_approval("r-a", "w", "appr_1", {"step": 1})
    assert await queue.resume("r-a")
    again = await queue.claim("w")
    assert again is not None and (again.id, again.attempts) == ("r-a", 1)


async def test_a_permanent_failure_ends_the_run_at_once(queue: RunQueue) -> None:
    await queue.enqueue([req("p")])
    await queue.claim("w")
    failed = await queue.fail("r-p", "w", "PolicyViolation: denied", transient=False)
    assert (failed.status, failed.error) == ("failed", "PolicyViolation: denied")


async def test_retry_puts_a_dead_run_back_before_later_runs_of_its_lead(
    queue: RunQueue,
) -> None:
    await queue.enqueue([req("x", "lead")])
    await queue.claim("w")
    await queue.fail("r-x", "w", "boom", transient=False)
    await queue.enqueue([req("y", "lead"), req("z", "lead")])
    assert await queue.claim("w") is not None  # y starts
    assert await queue.retry("r-x")
    assert await queue.claim("w") is None, "y still runs; x and z wait for it"
    await queue.complete("r-y", "w", {})
    assert await drain_ids(queue) == ["r-x"]
    retried = await queue.get("r-x")
    assert retried is not None and retried.attempts == 1
    assert not await queue.retry("r-y"), "only dead or failed runs are retried"


async def test_a_dead_workers_run_is_claimed_again_after_its_lease(
    queue: RunQueue, clock: FakeClock
) -> None:
    await queue.enqueue([req("k", "lead"), req("l", "lead")])
    assert (await queue.claim("dead-worker")) is not None
    clock.advance(LEASE / 2)
    assert await queue.claim("w2") is None
    clock.advance(LEASE)
    again = await queue.claim("w2")
    assert again is not None and (again.id, again.worker, again.attempts) == ("r-k", "w2", 2)
    assert not await queue.heartbeat("r-k", "dead-worker")
    await queue.complete("r-k", "dead-worker", {})
    still = await queue.get("r-k")
    assert still is not None and still.status == "running", "a lost worker cannot settle it"


async def test_heartbeats_keep_the_lease(queue: RunQueue, clock: FakeClock) -> None:
    await queue.enqueue([req("h")])
    await queue.claim("w")
    for _ in range(4):
        clock.advance(LEASE * 0.6)
        assert await queue.heartbeat("r-h", "w")
    assert await queue.claim("w2") is None


async def test_a_run_parked_for_approval_frees_its_lead_and_resumes(queue: RunQueue) -> None:
    await queue.enqueue([req("m", "lead"), req("n", "lead")])
    await queue.claim("w")
    await queue.wait_approval("r-m", "w", "appr_1", {"step": 1})
    parked = await queue.get("r-m")
    assert parked is not None and (parked.status, parked.approval_id) == (
        "waiting_approval",
        "appr_1",
    )
    assert await drain_ids(queue) == ["r-n"]
    assert await queue.resume("r-m")
    assert not await queue.resume("r-m")
    assert await drain_ids(queue) == [], "n still runs"
    await queue.complete("r-n", "w", {})
    assert await drain_ids(queue) == ["r-m"]


async def test_a_rejected_run_ends(queue: RunQueue) -> None:
    await queue.enqueue([req("r")])
    await queue.claim("w")
    await queue.wait_approval("r-r", "w", "appr_2", {})
    await queue.end("r-r", "rejected", "approval appr_2 was rejected")
    ended = await queue.get("r-r")
    assert ended is not None and ended.status == "rejected"
    assert await queue.claim("w") is None


async def test_a_released_run_is_claimable_again_without_counting_the_attempt(
    queue: RunQueue,
) -> None:
    await queue.enqueue([req("s", "lead"), req("t", "lead")])
    await queue.claim("w")
    await queue.release("r-s", "w")
    again = await queue.claim("w2")
    assert again is not None and (again.id, again.attempts) == ("r-s", 1)


async def test_a_run_released_until_later_waits_keeps_its_lead_order_and_its_error(
    queue: RunQueue, clock: FakeClock
) -> None:
    await queue.enqueue([req("s", "lead"), req("t", "lead")])
    await queue.claim("w")
    until = clock.now() + 600
    await queue.release("r-s", "w", at=until, error="limits.per_window.writes reached")
    assert await queue.claim("w") is None, "the lead's next run waits behind it"
    waiting = await queue.get("r-s")
    assert waiting is not None
    assert (waiting.status, waiting.attempts, waiting.available_at) == ("queued", 0, until)
    assert waiting.error == "limits.per_window.writes reached"
    clock.advance(601)
    again = await queue.claim("w2")
    assert again is not None and (again.id, again.attempts) == ("r-s", 1)


async def test_a_worker_claims_only_the_workflows_it_runs(queue: RunQueue) -> None:
    await queue.enqueue([req("o1", "lead", workflow="other"), req("m1", "lead2")])
    mine = await queue.claim("w", ["wf"])
    assert mine is not None and mine.id == "r-m1"
    assert await queue.claim("w", ["wf"]) is None
    theirs = await queue.claim("w2", ["other"])
    assert theirs is not None and theirs.id == "r-other-o1"


async def test_a_skipped_run_ends_with_its_reason_and_frees_its_lead(queue: RunQueue) -> None:
    await queue.enqueue([req("s1", "lead_s"), req("s2", "lead_s")])
    assert await drain_ids(queue) == ["r-s1"]
    await queue.skip("r-s1", "w", "lead lead_s was deleted")
    skipped = await queue.get("r-s1")
    assert skipped is not None
    assert (skipped.status, skipped.error, skipped.attempts) == (
        "skipped",
        "lead lead_s was deleted",
        1,
    )
    assert await drain_ids(queue) == ["r-s2"]
    assert not await queue.retry("r-s1")  # moot, not failed: nothing to retry
    assert [r.id for r in await queue.list(status="skipped")] == ["r-s1"]


async def test_runs_of_a_merged_away_lead_join_the_destinations_order(queue: RunQueue) -> None:
    await queue.enqueue([req("d1", "lead_d"), req("m1", "lead_m"), req("m2", "lead_m")])
    assert await queue.follow_merge("lead_m", "lead_d") == 2
    assert {r.lead_id for r in await queue.list()} == {"lead_d"}
    assert await drain_ids(queue) == ["r-d1"]  # the merged runs wait behind the destination's
    await queue.complete("r-d1", "w", {})
    assert await drain_ids(queue) == ["r-m1"]
    await queue.retarget("r-m1", "lead_x")
    assert await drain_ids(queue) == ["r-m2"]  # r-m1 (still running) now holds lead_x
    moved = await queue.get("r-m1")
    assert moved is not None and moved.lead_id == "lead_x"
