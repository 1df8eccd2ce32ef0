"""The distributed run queue: procrastinate's PostgreSQL job engine behind ``RunQueue``.

``ProcrastinateRunQueue`` is the embedded queue's interface and run records with every
claim and outcome going through procrastinate's jobs (``closeguard/store/jobs.py``): claims
with ``FOR UPDATE SKIP LOCKED`` from any number of processes, per-lead order by its
``lock``, retries in place. Deduplication stays in the inbox and the ``runs`` table, in the
same transaction as the job. ``queue_for(store)`` picks it on a PostgreSQL store (whose
migrations installed procrastinate's schema) and the embedded ``SqlRunQueue`` otherwise.
"""

from __future__ import annotations

from closeguard.store import Store
from closeguard.store.jobs import JobRows, has_jobs
from closeguard.tools.clock import Clock, SystemClock
from closeguard.workflows.queue import Backoff, SqlRunQueue

__all__ = ["ProcrastinateRunQueue", "queue_for"]


class ProcrastinateRunQueue(SqlRunQueue):
    """``RunQueue`` on procrastinate's jobs (PostgreSQL); see the module doc."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        lease: float = 60.0,
    ) -> None:
        super().__init__(store, clock=clock, backoff=backoff, lease=lease)
        self.rows = JobRows(store, self.clock.now)
        self.rows.follow_clock = not isinstance(self.clock, SystemClock)


def queue_for(
    store: Store,
    *,
    clock: Clock | None = None,
    backoff: Backoff | None = None,
    lease: float = 60.0,
) -> SqlRunQueue:
    """procrastinate's queue on a PostgreSQL store, the embedded one on SQLite."""
    with store.engine.connect() as conn:
        jobs = has_jobs(conn)
    kind = ProcrastinateRunQueue if jobs else SqlRunQueue
    return kind(store, clock=clock, backoff=backoff, lease=lease)
