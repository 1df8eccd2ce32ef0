"""The shared Close rate budget's backends: the store's ``rate_budget`` table, or Redis.

Both hold one ``tools.budget.Window`` per (scope, endpoint group) and apply the pure
arithmetic of ``tools/budget.py`` to it atomically: the table under ``SELECT ... FOR
UPDATE`` (``store/budget.py``), Redis in a ``WATCH``ed transaction retried on conflict.
``budget_for`` picks Redis when ``CLOSEGUARD_REDIS_URL`` is set, else the store when it is
PostgreSQL; on SQLite (one process) there is nothing to share and each client paces alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from time import monotonic
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from closeguard.store import Store
from closeguard.store.budget import BudgetRows
from closeguard.tools._pacing import RateLimitInfo
from closeguard.tools.budget import (
    GUARD,
    RateBudget,
    Window,
    chunk,
    news,
    observe,
    scope_of,
    take,
)
from closeguard.tools.settings import Settings

__all__ = ["RedisBudget", "SqlBudget", "budget_for"]

Change = Callable[[Window], tuple[Window, float]]


class _Shared:
    """What both backends share: a few grants taken per trip and kept here for the
    current window (``chunk``), and reports that tell the shared window nothing new
    (``news``) answered without a trip."""

    def __init__(self) -> None:
        self._seen: dict[str, Window] = {}
        self._left: dict[str, tuple[float | None, float]] = {}

    async def _change(self, group: str, change: Change) -> float:
        raise NotImplementedError

    async def take(self, group: str, now: float) -> float:
        """Grant one request now, or the seconds to wait.

        The grant is decided at the time the shared window is changed, not at ``now``: the
        trip waits behind the store thread's other work and the row lock of every other
        process, and a grant decided at the time it was asked could be made after its
        window ended, then counted by Close in the next one. Grants kept from a trip are
        spent only while no new grant of their window would be refused for lateness.
        """
        end, left = self._left.get(group, (None, 0.0))
        if left >= 1 and end is not None and now < end:
            self._left[group] = (end, left - 1)
            return 0.0
        want = chunk(self._seen.get(group, Window()))
        asked = monotonic()

        def grant(window: Window) -> tuple[Window, float]:
            new, result = take(window, now + (monotonic() - asked), want)
            self._seen[group] = new
            return new, result

        result = await self._change(group, grant)
        if result < 0:
            return -result
        seen = self._seen[group]
        last = None if seen.end is None else seen.end - GUARD * seen.span
        self._left[group] = (last, result - 1)
        return 0.0

    async def observe(self, group: str, info: RateLimitInfo, now: float) -> None:
        seen = self._seen.get(group)
        if seen is not None and not news(seen, info, now):
            return

        def merge(window: Window) -> tuple[Window, float]:
            self._seen[group] = observe(window, info, now)
            return self._seen[group], 0.0

        await self._change(group, merge)


class SqlBudget(_Shared):
    """``RateBudget`` in the store's ``rate_budget`` table (queries on the store thread)."""

    def __init__(self, store: Store, scope: str) -> None:
        super().__init__()
        self.store = store
        self.rows = BudgetRows(store, scope)

    async def _change(self, group: str, change: Change) -> float:
        return await self.store.run(self.rows.change, group, _plain(change))


def _plain(change: Change) -> Callable[[dict[str, Any]], tuple[dict[str, Any], float]]:
    def on_dicts(old: dict[str, Any]) -> tuple[dict[str, Any], float]:
        new, result = change(Window(**old))
        return asdict(new), result

    return on_dicts


def _decode(raw: Mapping[Any, Any]) -> Window:
    def number(name: str) -> float | None:
        value = raw.get(name.encode(), raw.get(name))
        return None if value in (None, b"", "") else float(value)

    return Window(
        end=number("end"),
        limit=number("limit"),
        span=number("span") or 1.0,
        used=number("used") or 0.0,
    )


class RedisBudget(_Shared):
    """``RateBudget`` in Redis: one hash per (scope, group), changed in ``WATCH``ed
    transactions; keys expire an hour after their last change."""

    def __init__(self, url: str, scope: str) -> None:
        super().__init__()
        self.redis = aioredis.Redis.from_url(url)
        self.scope = scope

    async def _change(self, group: str, change: Change) -> float:
        key = f"closeguard:budget:{self.scope}:{group}"
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    new, result = change(_decode(await pipe.hgetall(key)))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    fields: dict[str | bytes, str] = {
                        k: "" if v is None else repr(v) for k, v in asdict(new).items()
                    }
                    pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                    pipe.expire(key, 3600)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue

    async def aclose(self) -> None:
        await self.redis.aclose()


def budget_for(store: Store, api_key: str, settings: Settings | None = None) -> RateBudget | None:
    """The shared budget of ``api_key``: Redis if configured, else a PostgreSQL store's
    table, else None (SQLite: one process paces alone)."""
    redis_url = (settings or Settings()).redis_url
    if redis_url:
        return RedisBudget(redis_url, scope_of(api_key))
    if store.dialect == "postgresql":
        return SqlBudget(store, scope_of(api_key))
    return None
