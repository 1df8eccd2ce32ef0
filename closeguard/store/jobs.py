"""The ``runs`` table driven by procrastinate's job engine (PostgreSQL).

Each run has one procrastinate job (``args.run_id``; queue = the workflow, ``lock`` = the
lead), written in the same transaction as the run, so the inbox's deduplication and the
job engine never disagree. procrastinate's own SQL functions do the distributed part:
``procrastinate_fetch_job_v2`` claims with ``FOR UPDATE SKIP LOCKED`` and keeps a lock's
jobs in order (a job waiting with a lower id, or one being done, holds the lead), and
``procrastinate_retry_job_v2`` puts a job back *with its id*, so a retried, released,
resumed or recovered run keeps its place in its lead's order. The run's record (status,
attempts, lease, error, state) stays in ``runs``, updated in the same transaction as the job.

Time is the queue's clock: a lease that ran out (its worker died) is found in ``runs`` and
its job retried at the next claim; a backoff is the job's ``scheduled_at``, brought forward
when the clock says the run is due (so a fake clock in tests drives it too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, select, text, update

from closeguard.store.runs import RunRow, RunRows, _row

__all__ = ["TASK", "JobRows", "has_jobs"]

TASK = "closeguard.run"
_FINISH = {
    "completed": "succeeded",
    "failed": "failed",
    "dead": "failed",
    "rejected": "failed",
    "waiting_approval": "failed",
    "skipped": "succeeded",
}


def has_jobs(conn: Connection) -> bool:
    """Whether procrastinate's tables are in this store's schema (the first on its path)."""
    if conn.dialect.name != "postgresql":
        return False
    here = "SELECT to_regclass(format('%I.procrastinate_jobs', current_schema()))"
    return conn.execute(text(here)).scalar() is not None


class JobRows(RunRows):
    """``RunRows`` whose claims and outcomes go through procrastinate's jobs.

    ``follow_clock``: the queue's clock is not the database's (a fake clock in tests), so
    each claim first brings forward the backoffs that clock says are over; with the real
    clock ``scheduled_at`` is already right and the claim skips that scan.
    """

    follow_clock = False

    def insert(self, conn: Connection, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        new = super().insert(conn, requests)
        if new:
            fresh = set(new)
            jobs = [r for r in requests if r["id"] in fresh]
            conn.execute(
                text(
                    "SELECT procrastinate_defer_jobs_v1(ARRAY(SELECT ROW(q, :task, 0, l, NULL, "
                    "a::jsonb, NULL)::procrastinate_job_to_defer_v1 FROM unnest("
                    "CAST(:queues AS varchar[]), CAST(:locks AS varchar[]), "
                    "CAST(:args AS text[])) WITH ORDINALITY AS u(q, l, a, n) ORDER BY n))"
                ),
                {
                    "task": TASK,
                    "queues": [r["workflow"] for r in jobs],
                    "locks": [r.get("lead_id") for r in jobs],
                    "args": [json.dumps({"run_id": r["id"]}) for r in jobs],
                },
            )
        return new

    def claim_in(
        self,
        conn: Connection,
        worker: str,
        lease: float,
        *,
        only: str | None = None,
        workflows: Collection[str] | None = None,
    ) -> RunRow | None:
        now = self.now()
        queues = None if workflows is None else list(workflows)
        self._recover(conn, now)
        if self.follow_clock:
            self._bring_forward(conn, now)
        if only is not None:
            run = self.get(only)
            if run is None:
                return None
            queues = [run.workflow]
        for _ in range(10):
            with conn.begin_nested() as attempt:
                fetched = conn.execute(
                    text(
                        "SELECT id, args->>'run_id' FROM "
                        "procrastinate_fetch_job_v2(CAST(:queues AS varchar[]), NULL)"
                    ),
                    {"queues": queues},
                ).one()
                job_id, run_id = fetched
                if job_id is None:
                    return None
                if only is not None and run_id != only:
                    attempt.rollback()
                    return None
                claimed = self._start(conn, str(run_id), worker, now + lease, now)
                if claimed is not None:
                    return claimed
                self._finish(conn, int(job_id), "failed")
        return None

    def _start(
        self, conn: Connection, run_id: str, worker: str, until: float, now: float
    ) -> RunRow | None:
        t = self.table
        row = conn.execute(
            update(t)
            .where(and_(t.c.id == run_id, t.c.status == "queued"))
            .values(
                status="running",
                worker=worker,
                lease_until=until,
                attempts=t.c.attempts + 1,
                updated=now,
            )
            .returning(*t.c)
        ).first()
        return None if row is None else _row(row)

    def _recover(self, conn: Connection, now: float) -> None:
        """Runs whose lease ran out: their jobs back to ``todo`` in place."""
        t = self.table
        lost = conn.execute(
            select(t.c.id)
            .where(and_(t.c.status == "running", t.c.lease_until < now))
            .with_for_update(skip_locked=True)
        ).scalars()
        for run_id in list(lost):
            conn.execute(
                update(t)
                .where(t.c.id == run_id)
                .values(status="queued", worker=None, lease_until=None, updated=now)
            )
            self._retry(conn, run_id, None)

    def _bring_forward(self, conn: Connection, now: float) -> None:
        runs = self.store.engine.dialect.identifier_preparer.format_table(self.table)
        conn.execute(
            text(
                "UPDATE procrastinate_jobs AS j SET scheduled_at = now() FROM "
                f"{runs} AS r WHERE j.status = 'todo' AND j.scheduled_at > now() "
                "AND r.id = j.args->>'run_id' AND r.status = 'queued' AND r.available_at <= :now"
            ),
            {"now": now},
        )

    def _job(self, conn: Connection, run_id: str) -> tuple[int, str] | None:
        found = conn.execute(
            text(
                "SELECT id, status::text FROM procrastinate_jobs WHERE args->>'run_id' = :r "
                "ORDER BY id DESC LIMIT 1 FOR UPDATE"
            ),
            {"r": run_id},
        ).first()
        return None if found is None else (int(found[0]), str(found[1]))

    def _finish(self, conn: Connection, job_id: int, status: str) -> None:
        conn.execute(
            text(
                "SELECT procrastinate_finish_job_v1(:j, CAST(:s AS procrastinate_job_status), :d)"
            ),
            {"j": job_id, "s": status, "d": status == "succeeded"},
        )

    def _retry(self, conn: Connection, run_id: str, at: float | None) -> None:
        job = self._job(conn, run_id)
        if job is None or job[1] not in ("doing", "failed"):
            return
        when = None
        if at is not None and at > self.now():
            when = datetime.fromtimestamp(time.time() + at - self.now(), UTC)
        conn.execute(
            text("SELECT procrastinate_retry_job_v2(:j, :at, NULL, NULL, NULL)"),
            {"j": job[0], "at": when},
        )

    def _settled(self, conn: Connection, run_id: str, values: Mapping[str, Any]) -> None:
        status = values.get("status")
        if status == "queued":
            self._retry(conn, run_id, values.get("available_at"))
        elif status in _FINISH:
            job = self._job(conn, run_id)
            if job is not None and job[1] in ("todo", "doing"):
                self._finish(conn, job[0], _FINISH[status])

    def follow_merge(self, conn: Connection, source: str, destination: str) -> int:
        changed = super().follow_merge(conn, source, destination)
        conn.execute(
            text(
                "UPDATE procrastinate_jobs SET lock = :d WHERE lock = :s "
                "AND status IN ('todo', 'doing')"
            ),
            {"s": source, "d": destination},
        )
        return changed

    def _relocked(self, conn: Connection, run_ids: Sequence[str], lead_id: str) -> None:
        conn.execute(
            text(
                "UPDATE procrastinate_jobs SET lock = :l WHERE args->>'run_id' = ANY(:r) "
                "AND status IN ('todo', 'doing')"
            ),
            {"l": lead_id, "r": list(run_ids)},
        )

    def _requeued(self, conn: Connection, run_id: str) -> None:
        self._retry(conn, run_id, None)
