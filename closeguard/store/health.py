"""What a readiness probe and the metrics' gauges read of the store.

``probe`` opens a connection of its own (not the store's worker thread, which a long
transaction may hold), so a store that stopped answering is reported, not waited on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.pool import StaticPool

from closeguard.store import migrations
from closeguard.store.core import Store

__all__ = ["backlog", "probe", "readiness", "sample"]

P = ParamSpec("P")
T = TypeVar("T")


log = logging.getLogger("closeguard.store.health")


def probe(store: Store) -> dict[str, str | None]:
    """``{"store": ..., "migrations": ...}``: None for a part that is fine, else why not."""
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            at = migrations.current(conn, store.schema)
    except Exception as exc:
        # The driver's message may name hosts and users: logged here, not served.
        first = str(exc).strip().splitlines()
        log.warning("readiness: the store does not answer: %s", first[0] if first else exc)
        return {"store": f"does not answer ({type(exc).__name__})", "migrations": "unknown"}
    want = migrations.head()
    behind = None if at == want else f"at {at or 'none'}, this version needs {want}"
    return {"store": None, "migrations": behind}


def backlog(store: Store, now: float) -> dict[str, float | dict[str, float]]:
    """Inbox depth, runs by status, the oldest claimable queued run's wait, pending approvals."""
    inbox, runs, approvals = store.tables.inbox, store.tables.runs, store.tables.approvals
    with store.engine.connect() as conn:
        depth = conn.execute(
            select(func.count()).select_from(inbox).where(inbox.c.dispatched.is_(False))
        ).scalar_one()
        by_status = conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
        counts = {str(status): float(n) for status, n in by_status}
        oldest = conn.execute(
            select(func.min(runs.c.available_at)).where(
                runs.c.status == "queued", runs.c.available_at <= now
            )
        ).scalar_one()
        pending = conn.execute(
            select(func.count()).select_from(approvals).where(approvals.c.status == "pending")
        ).scalar_one()
    return {
        "inbox_depth": float(depth),
        "runs": counts,
        "queue_age_seconds": max(0.0, now - float(oldest)) if oldest is not None else 0.0,
        "approvals_pending": float(pending),
    }


async def readiness(store: Store) -> dict[str, str | None]:
    """``probe`` on a thread of its own (a readiness check for ``telemetry.Probes``)."""
    return await _off_loop(store, probe, store)


async def sample(store: Store) -> dict[str, float | dict[str, float]]:
    """``backlog`` now, on a thread of its own (a sampler for ``telemetry.metrics``)."""
    return await _off_loop(store, backlog, store, time.time())


async def _off_loop(store: Store, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """On a thread of its own, except for an in-memory SQLite database: that is one
    connection, which only the store's own thread may use."""
    if isinstance(store.engine.pool, StaticPool):
        return await store.run(fn, *args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
