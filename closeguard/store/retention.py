"""Retention's queries on the store: what a prune may remove, and the short transactions
that remove it while workers keep writing.

What goes: finished runs (``runs.FINAL``) last updated before the cutoff, with their effect
journal and, on PostgreSQL, their procrastinate jobs; inbox rows already dispatched and
received before the cutoff *and* before the dedup window (``INBOX_WINDOW``: Close keeps
events 30 days, so Event Log catch-up may hand back an event that old, and only its inbox
row makes it a duplicate); audit rows up to a boundary (a prefix of the chain: the guard's
``archive`` exports them and writes the anchor first). What stays: every unfinished run
(queued, running, waiting for approval), its journal, and the audit rows from the oldest
row of an unfinished run or of an open approval on. Each batch is its own transaction, so
no lock is held for long; each delete re-checks its conditions, so a run that changed
meanwhile is left alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, not_, select, text

from closeguard.store.core import Store
from closeguard.store.jobs import has_jobs
from closeguard.store.runs import FINAL

__all__ = ["INBOX_WINDOW", "OPEN_APPROVALS", "FinishedRun", "RetentionRows"]

INBOX_WINDOW = 30 * 86400.0
"""Seconds an inbox row is kept at least: the dedup window (Close's Event Log retention)."""
OPEN_APPROVALS = ("pending", "approved")
"""Approval statuses still to be used; with an unexpired ``expires``, an open approval."""
_JOBS_DONE = "('succeeded', 'failed', 'cancelled', 'aborted')"


@dataclass(frozen=True)
class FinishedRun:
    """A finished run: enough to find its checkpoint threads."""

    seq: int
    id: str
    workflow: str
    payload: dict[str, Any]


class RetentionRows:
    """Counts and batched deletes on ``store``'s tables for a cutoff (epoch seconds)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.t = store.tables

    # -- runs ------------------------------------------------------------------------------

    def _finished(self, before: float) -> Any:
        runs = self.t.runs
        return and_(runs.c.status.in_(FINAL), runs.c.updated < before)

    def count_runs(self, before: float) -> tuple[int, int]:
        """How many finished runs, and journal entries of theirs, a prune would remove."""
        runs, effects = self.t.runs, self.t.effects
        with self.store.engine.connect() as conn:
            n = conn.execute(select(func.count()).where(self._finished(before))).scalar_one()
            e = conn.execute(
                select(func.count())
                .select_from(effects.join(runs, runs.c.id == effects.c.run_id))
                .where(self._finished(before))
            ).scalar_one()
        return int(n), int(e)

    def finished_runs(self, before: float, after_seq: int, limit: int) -> list[FinishedRun]:
        """The next ``limit`` finished runs past ``after_seq``, in ``seq`` order."""
        runs = self.t.runs
        query = (
            select(runs.c.seq, runs.c.id, runs.c.workflow, runs.c.payload)
            .where(and_(self._finished(before), runs.c.seq > after_seq))
            .order_by(runs.c.seq)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [FinishedRun(int(r.seq), r.id, r.workflow, _payload(r.payload)) for r in rows]

    def delete_runs(self, ids: Sequence[str], before: float) -> tuple[list[str], int]:
        """In one transaction: the runs of ``ids`` still finished before ``before``, their
        journal entries and their finished jobs; the ids removed and the journal count."""
        if not ids:
            return [], 0
        runs, effects = self.t.runs, self.t.effects
        with self.store.engine.begin() as conn:
            gone = [
                str(r[0])
                for r in conn.execute(
                    delete(runs)
                    .where(and_(runs.c.id.in_(list(ids)), self._finished(before)))
                    .returning(runs.c.id)
                )
            ]
            if not gone:
                return [], 0
            journal = conn.execute(delete(effects).where(effects.c.run_id.in_(gone))).rowcount
            if has_jobs(conn):
                conn.execute(
                    text(
                        "DELETE FROM procrastinate_jobs WHERE args->>'run_id' = ANY(:ids) "
                        f"AND status::text IN {_JOBS_DONE} AND id NOT IN (SELECT job_id "
                        "FROM procrastinate_periodic_defers WHERE job_id IS NOT NULL)"
                    ),
                    {"ids": gone},
                )
        return gone, int(journal or 0)

    # -- inbox -----------------------------------------------------------------------------

    def _old_events(self, before: float, now: float) -> Any:
        inbox = self.t.inbox
        oldest = min(before, now - INBOX_WINDOW)
        return and_(inbox.c.dispatched.is_(True), inbox.c.received < oldest)

    def count_inbox(self, before: float, now: float | None = None) -> int:
        with self.store.engine.connect() as conn:
            query = select(func.count()).where(self._old_events(before, now or time.time()))
            return int(conn.execute(query).scalar_one())

    def delete_inbox(self, before: float, limit: int, now: float | None = None) -> int:
        """One batch of at most ``limit`` old dispatched inbox rows; how many went."""
        inbox = self.t.inbox
        batch = (
            select(inbox.c.event_id)
            .where(self._old_events(before, now or time.time()))
            .limit(limit)
            .scalar_subquery()
        )
        with self.store.engine.begin() as conn:
            gone = conn.execute(
                delete(inbox).where(
                    and_(inbox.c.event_id.in_(batch), self._old_events(before, now or time.time()))
                )
            ).rowcount
        return int(gone or 0)

    # -- audit -----------------------------------------------------------------------------

    def audit_span(self, before_ts: str, now: float | None = None) -> tuple[int, int, str | None]:
        """``(first, last, held_by)``: the audit rows a prune may remove, ``first`` to
        ``last`` (none when ``last < first``): those before the first row written at or
        after ``before_ts`` (an ISO time, as ``ts`` is stored), and before the first row of
        an unfinished run or an open approval; ``held_by`` says what stopped it earlier."""
        audit, runs, approvals = self.t.audit, self.t.runs, self.t.approvals
        with self.store.engine.connect() as conn:
            first = conn.execute(select(func.min(audit.c.seq))).scalar()
            if first is None:
                return 1, 0, None
            later = conn.execute(
                select(func.min(audit.c.seq)).where(audit.c.ts >= before_ts)
            ).scalar()
            if later is None:
                later = int(conn.execute(select(func.max(audit.c.seq))).scalar_one()) + 1
            last, held_by = int(later) - 1, None
            if last < first:
                return int(first), last, None
            span = and_(audit.c.seq >= first, audit.c.seq <= last)
            unfinished = select(runs.c.id).where(not_(runs.c.status.in_(FINAL)))
            run_row = conn.execute(
                select(audit.c.seq, audit.c.run_id)
                .where(and_(span, audit.c.run_id.in_(unfinished)))
                .order_by(audit.c.seq)
                .limit(1)
            ).first()
            if run_row is not None:
                last, held_by = int(run_row.seq) - 1, f"run {run_row.run_id} is not finished"
                span = and_(audit.c.seq >= first, audit.c.seq <= last)
            stamp = now or time.time()
            open_ = select(approvals.c.id).where(
                and_(approvals.c.status.in_(OPEN_APPROVALS), approvals.c.expires > stamp)
            )
            approval_row = conn.execute(
                select(audit.c.seq, audit.c.approval_id)
                .where(and_(span, audit.c.approval_id.in_(open_)))
                .order_by(audit.c.seq)
                .limit(1)
            ).first()
            if approval_row is not None:
                last = int(approval_row.seq) - 1
                held_by = f"approval {approval_row.approval_id} is still open"
        return int(first), last, held_by

    def delete_audit(self, first: int, last: int) -> int:
        """Remove audit rows ``first``..``last`` in one transaction; how many went."""
        audit = self.t.audit
        with self.store.engine.begin() as conn:
            gone = conn.execute(delete(audit).where(audit.c.seq.between(first, last))).rowcount
        return int(gone or 0)


def _payload(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
