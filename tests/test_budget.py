"""The shared rate budget: its window arithmetic, and every backend granting each window's
limit once across clients (the store's table and Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from closeguard.store import Store
from closeguard.tools._pacing import RateLimitInfo
from closeguard.tools.budget import GUARD, MARGIN, RateBudget, Window, chunk, observe, take
from closeguard.workflows.budget import Change, RedisBudget, SqlBudget
from tests._pg import schema_store

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_a_window_grants_its_limit_less_headroom_then_waits_for_its_end() -> None:
    window = observe(Window(), RateLimitInfo(limit=10, remaining=9, reset=0.5), now=100.0)
    assert (window.end, window.limit, window.used) == (100.5, 10, 1)
    window, granted = take(window, 100.1, want=20)
    assert granted == 8 and window.used == 9, "never more than the limit less HEADROOM"
    same, wait = take(window, 100.2)
    assert same == window and wait == pytest.approx(-(0.3 + MARGIN))
    rolled, granted = take(window, 100.5 + MARGIN)
    assert granted == 1 and (rolled.end, rolled.used) == (101.5, 1)
    assert chunk(Window(limit=20)) == 1 and chunk(Window(limit=4000)) == 8


def test_nothing_is_granted_in_the_last_part_of_a_window() -> None:
    fresh = Window(end=100.5, limit=10, span=1.0, used=0)
    late = 100.5 - GUARD + 0.01
    same, wait = take(fresh, late)
    assert same == fresh and wait == pytest.approx(-(100.5 + MARGIN - late))
    _, granted = take(fresh, 100.5 - GUARD - 0.01)
    assert granted == 1


def test_what_close_counted_raises_the_count_and_late_reports_do_not_reset_it() -> None:
    window = Window(end=10.0, limit=20, span=1.0, used=2)
    busier = observe(window, RateLimitInfo(limit=20, remaining=5, reset=0.3), now=9.7)
    assert busier.used == 15 and busier.end == 10.0
    late = observe(busier, RateLimitInfo(limit=20, remaining=19, reset=0.1), now=9.95)
    assert late.used == 15, "a report of the same window never lowers the count"
    nothing_known, granted = take(Window(), 5.0)
    assert granted == 1 and nothing_known.used == 1
    for _ in range(5):
        nothing_known, _ = take(nothing_known, 5.0)
    first = observe(nothing_known, RateLimitInfo(limit=20, remaining=19, reset=0.5), now=5.01)
    assert first.used == 6, "grants made before any report still count in its window"


async def _grants(make: Callable[[], RateBudget], now: float) -> int:
    budgets = [make() for _ in range(4)]
    info = RateLimitInfo(limit=10, remaining=10, reset=0.8)
    await budgets[0].observe("lead:read", info, now)
    waits = await asyncio.gather(*(b.take("lead:read", now + 0.1) for b in budgets * 5))
    return sum(1 for w in waits if w == 0)


async def test_the_store_table_grants_a_window_once_across_clients(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        assert await _grants(lambda: SqlBudget(store, "key:t"), 1000.0) == 9
    finally:
        store.dispose()


async def test_the_store_table_grants_a_window_once_on_postgresql() -> None:
    """PostgreSQL's ``INSERT ... ON CONFLICT`` (its dialect imported only there) and
    ``FOR UPDATE`` count each grant once too."""
    with schema_store("cg_budget_") as store:
        assert await _grants(lambda: SqlBudget(store, "key:pg"), 1000.0) == 9


async def test_under_a_large_limit_a_trip_takes_a_few_grants(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        budget, other = SqlBudget(store, "key:big"), SqlBudget(store, "key:big")
        info = RateLimitInfo(limit=400, remaining=400, reset=0.9)
        await budget.observe("lead:read", info, 50.0)
        assert [await budget.take("lead:read", 50.1) for _ in range(8)] == [0.0] * 8
        window = budget._seen["lead:read"]
        assert window.used == 8, "one trip took eight grants"
        await other.take("lead:read", 50.2)
        assert other._seen["lead:read"].used == 9, "a client that knows no limit yet takes one"
    finally:
        store.dispose()


class _SlowTrip(SqlBudget):
    """The store's budget whose trips wait ``delay`` seconds before reaching the row (a
    busy store thread, another process holding the lock)."""

    delay = 0.0

    async def _change(self, group: str, change: Change) -> float:
        await asyncio.sleep(self.delay)
        return await super()._change(group, change)


async def test_a_grant_is_decided_when_the_window_is_changed_not_when_asked(store: Store) -> None:
    budget = _SlowTrip(store, "key:slow")
    await budget.observe("lead:read", RateLimitInfo(limit=20, remaining=20, reset=0.5), 100.0)
    budget.delay = 0.04
    asked = 100.5 - GUARD - 0.01
    wait = await budget.take("lead:read", asked)
    assert wait > 0, "asked in time, but the trip reached the window inside its last part"
    assert budget._seen["lead:read"].used == 0, "nothing was granted in that window"
    budget.delay = 0.0
    assert await budget.take("lead:read", asked) == 0.0, "a prompt trip is granted"


async def test_grants_kept_from_a_trip_are_not_spent_late_in_their_window(store: Store) -> None:
    budget = SqlBudget(store, "key:kept")
    await budget.observe("lead:read", RateLimitInfo(limit=400, remaining=400, reset=0.9), 50.0)
    assert await budget.take("lead:read", 50.1) == 0.0
    assert budget._seen["lead:read"].used == 8, "one trip took eight grants"
    late = 50.9 - GUARD + 0.01
    assert await budget.take("lead:read", late) > 0, "the seven kept are not spent now"
    assert budget._seen["lead:read"].used == 8


@pytest.fixture
async def redis_scope() -> AsyncIterator[str]:
    scope = f"test-{uuid.uuid4().hex[:8]}"
    probe = RedisBudget(REDIS_URL, scope)
    try:
        await probe.redis.ping()
    except Exception as exc:
        pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield scope
    await probe.redis.delete(f"closeguard:budget:{scope}:lead:read")
    await probe.aclose()


async def test_redis_grants_a_window_once_across_clients(redis_scope: str) -> None:
    made: list[RedisBudget] = []

    def make() -> RedisBudget:
        made.append(RedisBudget(REDIS_URL, redis_scope))
        return made[-1]

    try:
        assert await _grants(make, 2000.0) == 9
    finally:
        for budget in made:
            await budget.aclose()


class _Recorder:
    """A budget that asks to wait once, then grants; records what it is told."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, float]] = []
        self.seen: list[RateLimitInfo] = []

    async def take(self, group: str, now: float) -> float:
        self.asked.append((group, now))
        return 0.25 if len(self.asked) == 1 else 0.0

    async def observe(self, group: str, info: RateLimitInfo, now: float) -> None:
        self.seen.append(info)


async def test_the_client_waits_for_the_budget_and_feeds_it_the_header(
    make_client: Callable[..., Any], fake_time: Any
) -> None:
    budget = _Recorder()
    headers = {"RateLimit": "limit=20, remaining=7, reset=0.4"}
    client = make_client(lambda r: httpx.Response(200, json={}, headers=headers), budget=budget)
    await client.request("GET", "/me/")
    assert [g for g, _ in budget.asked] == ["me:read", "me:read"]
    assert 0.25 in fake_time.sleeps
    assert budget.seen == [RateLimitInfo(limit=20, remaining=7, reset=0.4)]
