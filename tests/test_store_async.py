"""``Store.run``: store work from async code happens on the store's thread, not the loop's;
``Store.trip`` (a run's short hot-path writes) runs in the loop's thread on a SQLite file only
when it cannot wait on a lock there."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from closeguard.agent.testing import call, scripted, turn
from closeguard.guardrails import Approvals, AuditLog, GuardTransport, Policy
from closeguard.guardrails.quotas import Quotas, Reserved
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.store.approvals import ApprovalRows
from closeguard.store.audit import AuditRows
from closeguard.store.quotas import QuotaCounters
from closeguard.tools.catalog import classify
from closeguard.tools.clock import FakeClock
from closeguard.tools.errors import ApprovalRequired, PolicyViolation, StoreError
from tests._agent import MERGE_POLICY, rig

T = TypeVar("T")


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


# -- the guard transport never waits on the store on the event loop ----------------------

POLICY = """
name: gated
grants: {"*": read, lead: write, task: write, activity.note: write}
deny: [lead.delete]
approve: [lead.update]
limits:
  per_run: {writes: 3}
  per_window: {window: 60s, per_endpoint: {task.create: 5}}
"""
BASE = "https://api.close.com/api/v1"


class _Ok(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "x"})


class Gate:
    """Holds a store call in its thread until a coroutine on the loop opens the gate: if the
    call ran on the loop thread, nothing could open it and the call would fail after 5 s."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.threads: list[threading.Thread] = []

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        def gated(*args: Any, **kwargs: Any) -> T:
            self.threads.append(threading.current_thread())
            self.entered.set()
            assert self.opened.wait(5), "the event loop was blocked while the store worked"
            return fn(*args, **kwargs)

        return gated

    async def open_from_the_loop(self) -> None:
        deadline = asyncio.get_running_loop().time() + 5
        while not self.entered.is_set():
            assert asyncio.get_running_loop().time() < deadline, "the store was never called"
            await asyncio.sleep(0.001)
        self.opened.set()


def _request(method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Request:
    request = httpx.Request(method, f"{BASE}{path}", json=body)
    request.extensions["closeguard"] = {"call_id": f"{method}{path}{body}", "attempt": 1}
    return request


async def _approved_update(store: Store) -> httpx.Request:
    request = _request("PUT", "/lead/lead_1/", {"name": "n"})
    approvals = Approvals(store)
    pending = approvals.request(
        classify("PUT", "/lead/lead_1/", {"name": "n"}),
        method="PUT",
        path="/lead/lead_1/",
        policy="gated",
    )
    approvals.approve(pending.id, by="me")
    return request


PATHS: dict[str, tuple[type, str, str, str, dict[str, Any] | None]] = {
    "denial audit flush": (AuditRows, "append", "DELETE", "/lead/lead_1/", None),
    "approval request": (ApprovalRows, "open_or_insert", "PUT", "/lead/lead_1/", {"a": 1}),
    "approval lookup": (ApprovalRows, "granted", "PUT", "/lead/lead_1/", {"a": 2}),
    "approval consume": (ApprovalRows, "consume", "PUT", "/lead/lead_1/", {"name": "n"}),
}


@pytest.mark.parametrize("path", sorted(PATHS))
async def test_guard_store_work_runs_off_the_event_loop(
    path: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, method_name, method, url, body = PATHS[path]
    if path == "approval consume":
        await _approved_update(store)
    gate = Gate()
    monkeypatch.setattr(owner, method_name, gate.wrap(getattr(owner, method_name)))
    transport = GuardTransport(_Ok(), Policy.from_yaml(POLICY), store=store, run_id="r")
    call = asyncio.ensure_future(transport.handle_async_request(_request(method, url, body)))
    await gate.open_from_the_loop()
    with contextlib.suppress(PolicyViolation, ApprovalRequired):
        await call
    assert gate.threads and threading.current_thread() not in gate.threads
    await transport.aclose()


async def test_batch_and_close_flushes_run_off_the_event_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(AuditRows, "append", gate.wrap(AuditRows.append))
    log = AuditLog(store, batch_size=2)
    transport = GuardTransport(_Ok(), Policy.from_yaml(POLICY), store=store, audit=log)
    await transport.handle_async_request(_request("GET", "/lead/lead_1/"))
    call = asyncio.ensure_future(transport.handle_async_request(_request("GET", "/lead/x/")))
    await gate.open_from_the_loop()
    await call
    await transport.handle_async_request(_request("GET", "/lead/y/"))
    await transport.aclose()
    assert log.head()[0] == 3 and log.verify().ok
    assert len(gate.threads) == 2 and threading.current_thread() not in gate.threads


async def _tick(ticks: list[float]) -> None:
    """Note the time every 10 ms, for ever: a gap says the event loop was blocked."""
    while True:
        ticks.append(time.perf_counter())
        await asyncio.sleep(0.01)


async def test_a_ticker_keeps_its_pace_while_the_store_is_slow(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The brief's timing proof: a 0.4 s store call, a 10 ms ticker, no gap near 0.4 s.

    A loop blocked by the call would miss ticks for its whole 0.4 s; the bound of 0.2 s
    leaves room for what a busy 2-core machine does to any process (a 107 ms gap was seen
    under the full suite with a 0.2 s call, by the scheduler, not the store)."""
    original = AuditRows.append

    def slow(self: AuditRows, *args: Any) -> None:
        time.sleep(0.4)
        original(self, *args)

    monkeypatch.setattr(AuditRows, "append", slow)
    transport = GuardTransport(_Ok(), Policy.from_yaml(POLICY), store=store)
    ticks: list[float] = []
    task = asyncio.ensure_future(_tick(ticks))
    await asyncio.sleep(0.02)
    with pytest.raises(PolicyViolation):
        await transport.handle_async_request(_request("DELETE", "/lead/lead_1/"))
    task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert ticks[-1] - ticks[0] >= 0.4 and max(gaps) < 0.2
    await transport.aclose()


async def test_a_window_refusal_gives_the_per_run_units_back(store: Store) -> None:
    clock = FakeClock(1_000_000.0)
    policy = Policy.from_yaml(
        "name: q\ngrants: {task: write}\n"
        "limits: {per_run: {writes: 2}, per_window: {window: 60s, writes: 1}}\n"
    )
    quotas = Quotas(policy, store, clock=clock.now)

    async def charge(call_id: str) -> str | None:
        return await quotas.acharge(
            call_id=call_id, run_id="r", endpoint="task.create", access="write"
        )

    assert await charge("a") is None
    assert await charge("b") == "limits.per_window.writes"
    clock.advance(60)
    assert await charge("c") is None
    assert await charge("d") == "limits.per_run.writes"


def test_per_run_limits_are_charged_without_the_store(store: Store) -> None:
    """The guard's hot path: per-run units are settled in memory (a retry is free); only a
    per-window limit leaves a reservation for the store to charge."""
    policy = Policy.from_yaml("name: q3\ngrants: {task: write}\nlimits: {per_run: {writes: 1}}\n")
    quotas = Quotas(policy, None)
    take: dict[str, Any] = {"run_id": "r", "endpoint": "task.create", "access": "write"}
    assert quotas.reserve(call_id="a", **take) is None
    assert quotas.reserve(call_id="a", **take) is None
    assert quotas.reserve(call_id="b", **take) == "limits.per_run.writes"
    windowed = Quotas(
        Policy.from_yaml(
            "name: q4\ngrants: {task: write}\nlimits: {per_window: {window: 60s, writes: 1}}\n"
        ),
        store,
    )
    step = windowed.reserve(call_id="a", **take)
    assert isinstance(step, Reserved) and windowed.window_count("writes") == 0


async def test_the_agents_review_asks_the_store_off_the_event_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = Simulator(seed=3, leads=4)
    src, dst = list(sim.state["leads"])[:2]
    model = scripted(
        turn("Merging.", call("lead_merge", source=src, destination=dst)), turn("Done.")
    )
    gate = Gate()
    monkeypatch.setattr(ApprovalRows, "open_or_insert", gate.wrap(ApprovalRows.open_or_insert))
    async with rig(store, MERGE_POLICY, model, sim=sim) as r:
        asked = asyncio.ensure_future(r.ask("merge those two"))
        await gate.open_from_the_loop()
        [pending] = (await asked)["__interrupt__"]
    approval = Approvals(store).get(pending.value["approval_id"])
    assert approval is not None and approval.status == "pending"
    assert gate.threads and threading.current_thread() not in gate.threads


async def test_a_failed_window_charge_gives_the_per_run_units_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = Policy.from_yaml(
        "name: q2\ngrants: {task: write}\n"
        "limits: {per_run: {writes: 1}, per_window: {window: 60s, writes: 9}}\n"
    )
    quotas = Quotas(policy, store)

    def broken(*_: Any, **__: Any) -> str | None:
        raise StoreError("database is locked")

    monkeypatch.setattr(QuotaCounters, "charge", broken)
    with pytest.raises(StoreError):
        await quotas.acharge(call_id="a", run_id="r", endpoint="task.create", access="write")
    monkeypatch.undo()
    assert (
        await quotas.acharge(call_id="b", run_id="r", endpoint="task.create", access="write")
        is None
    )


async def test_run_passes_the_callers_context_variables() -> None:
    store = Store("sqlite://")
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    try:
        assert await store.run(var.get) == "caller"
    finally:
        store.dispose()


# -- Store.trip: inline on SQLite when it cannot wait, else the thread -------------------


def _charge_transport(store: Store) -> GuardTransport:
    return GuardTransport(_Ok(), Policy.from_yaml(POLICY), store=store, run_id="r")


def _charging_threads(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The thread of each window charge from now on, in order."""
    threads: list[threading.Thread] = []
    original = QuotaCounters.charge

    def charge(self: QuotaCounters, *args: Any, **kwargs: Any) -> str | None:
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QuotaCounters, "charge", charge)
    return threads


def _window_count(store: Store) -> int:
    with store.engine.connect() as conn:
        rows = conn.execute(store.tables.quota_counters.select()).all()
    return sum(int(row._mapping["count"]) for row in rows)


async def test_a_window_charge_runs_inline_when_the_store_is_free(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _charging_threads(monkeypatch)
    transport = _charge_transport(store)
    trips, handoffs = store.trips, store.handoffs
    await transport.handle_async_request(_request("POST", "/task/", {"lead_id": "lead_1"}))
    assert threads == [threading.current_thread()]
    assert (store.trips - trips, store.handoffs - handoffs, store.contended) == (1, 0, 0)
    assert _window_count(store) == 1
    await transport.aclose()


async def test_a_window_charge_waits_on_the_thread_while_another_process_writes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds SQLite's write lock: the trip gives up at once (nothing of
    it written), goes to the store's thread and waits there, the loop free meanwhile; it is
    charged once, after the lock is let go."""
    threads = _charging_threads(monkeypatch)
    transport = _charge_transport(store)
    other = sqlite3.connect(str(tmp_path / "store.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks: list[float] = []
    ticking = asyncio.ensure_future(_tick(ticks))
    call = asyncio.ensure_future(
        transport.handle_async_request(_request("POST", "/task/", {"lead_id": "lead_1"}))
    )
    await asyncio.sleep(0.3)
    assert not call.done(), "the charge did not wait for the write lock"
    other.execute("COMMIT")
    other.close()
    await call
    ticking.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    # Blocked on the lock, the loop would miss ticks for the whole 0.3 s; gaps near 0.1 s
    # happen on a busy 2-core machine under the full suite whatever the store does.
    assert max(gaps) < 0.2, "the event loop waited on SQLite's lock"
    assert store.contended == 1
    assert threads[0] is threading.current_thread()
    assert threads[1] is not threading.current_thread() and len(threads) == 2
    assert _window_count(store) == 1
    await transport.aclose()


async def test_a_trip_runs_after_the_calls_already_on_the_thread(store: Store) -> None:
    """Trips run in the order they were made (``Store.trips`` numbers them so): while the
    thread has a call to finish, a trip queues behind it instead of running first."""
    order: list[str] = []
    gate = threading.Event()

    def slow() -> None:
        gate.wait(5)
        order.append("run")

    def quick() -> threading.Thread:
        with store.engine.begin():
            order.append("trip")
        return threading.current_thread()

    first = asyncio.ensure_future(store.run(slow))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(store.trip(quick))
    await asyncio.sleep(0.05)
    assert order == []
    gate.set()
    await first
    assert await second is not threading.current_thread()
    assert order == ["run", "trip"]
    assert await store.trip(quick) is threading.current_thread()
    assert order == ["run", "trip", "trip"]


async def test_a_trip_on_an_in_memory_store_goes_to_the_thread() -> None:
    memory = Store("sqlite://")
    try:
        assert not memory.inline
        assert await memory.trip(threading.current_thread) is not threading.current_thread()
        assert memory.handoffs == memory.trips == 1
    finally:
        memory.dispose()


async def test_a_trip_that_opens_a_second_transaction_is_refused(store: Store) -> None:
    """A trip's function is called again on the thread when its transaction could not
    begin: one whose first transaction committed must not be, so a second one in an
    inline trip is refused before it runs anything."""
    table = store.tables.quota_counters
    calls = 0

    def twice() -> None:
        nonlocal calls
        calls += 1
        for window in (0, 1):
            with store.engine.begin() as conn:
                row = {"key": f"k{calls}", "window_start": window, "count": 1}
                conn.execute(table.insert().values(row))

    with pytest.raises(RuntimeError, match="one transaction"):
        await store.trip(twice)
    assert calls == 1 and _window_count(store) == 1 and store.contended == 0
    await store.run(twice)
    assert _window_count(store) == 3, "Store.run may open as many as it needs"


async def test_a_trips_failure_is_the_callers_and_rolls_back(store: Store) -> None:
    table = store.tables.quota_counters

    def failing() -> None:
        with store.engine.begin() as conn:
            conn.execute(table.insert().values(key="k", window_start=0, count=1))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await store.trip(failing)
    assert _window_count(store) == 0 and store.handoffs == 0 and store.contended == 0

    def writing() -> int:
        with store.engine.begin() as conn:
            conn.execute(table.insert().values(key="k", window_start=0, count=2))
        return 7

    assert await store.trip(writing) == 7
    assert _window_count(store) == 2


def test_a_long_lived_guards_call_ids_are_forgotten_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A retry is free only while its call id is remembered: the newest ``_MAX_CALL_IDS``
    are, in a queue that drops its oldest in constant time (a long-lived client, an MCP
    gateway's, makes millions of calls)."""
    from closeguard.guardrails import quotas as module

    monkeypatch.setattr(module, "_MAX_CALL_IDS", 3)
    policy = Policy.from_yaml("name: q5\ngrants: {task: write}\nlimits: {per_run: {writes: 9}}\n")
    quotas = Quotas(policy, None)
    take: dict[str, Any] = {"run_id": "r", "endpoint": "task.create", "access": "write"}
    for call_id in "abcd":
        assert quotas.reserve(call_id=call_id, **take) is None
    assert list(quotas._charged) == ["b", "c", "d"]
    counts = quotas._runs[("q5", "r")]
    assert quotas.reserve(call_id="d", **take) is None and counts["writes"] == 4
    assert quotas.reserve(call_id="a", **take) is None and counts["writes"] == 5


async def test_the_review_of_an_allowed_call_makes_no_store_trip(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[str] = []
    run = Store.run

    async def counted(self: Store, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        trips.append(getattr(fn, "__qualname__", repr(fn)))
        return await run(self, fn, *args, **kwargs)

    monkeypatch.setattr(Store, "run", counted)
    sim = Simulator(seed=3, leads=4)
    lead = next(iter(sim.state["leads"]))
    model = scripted(
        turn("", call("lead_get", id=lead)),
        turn("", call("lead_teleport", id=lead)),
        turn("Done."),
    )
    async with rig(store, "read-only", model, sim=sim) as r:
        result = await r.ask("look that lead up")
    replies = [m for m in result["messages"] if getattr(m, "type", "") == "tool"]
    assert lead in str(replies[0].content) and "not available" in str(replies[1].content)
    assert trips.count("_audit_unavailable") == 1, trips
    assert all(t in ("_audit_unavailable", "AuditLog.flush") for t in trips), trips
    refused = [row for row in AuditLog(store).tail(5) if row["path"] == "lead_teleport"]
    assert [row["decision"] for row in refused] == ["deny"]
