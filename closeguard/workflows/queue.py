"""The run queue: a small interface, and the embedded implementation on the store.

``RunQueue`` is what the inbox and the workers need: enqueue runs (deduplicated by workflow
and trigger key), claim one (runs of one lead in order, a lease against dead workers),
settle it (completed, waiting for approval, failed, retried with backoff, dead-lettered with
its error), and put a dead run back in its lead's order. ``SqlRunQueue`` keeps it in the
store's ``runs`` table (SQLite by default); a PostgreSQL job engine can stand behind the
same interface, and ``tests/test_wf_queue_contract.py`` runs one suite against each.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy import Connection

from closeguard.store import Store
from closeguard.store.effects import EffectRows
from closeguard.store.fates import LeadFates
from closeguard.store.runs import RunRow, RunRows
from closeguard.tools.clock import Clock, SystemClock

__all__ = ["Backoff", "Completed", "RunQueue", "RunRequest", "RunRow", "SqlRunQueue", "new_run_id"]


def new_run_id() -> str:
    return f"run_{secrets.token_hex(6)}"


@dataclass(frozen=True)
class RunRequest:
    """A run to queue. ``trigger_key``: what makes it unique for its workflow (the event id,
    ``tick:<time>`` or ``manual:<id>``)."""

    workflow: str
    trigger_key: str
    kind: str
    payload: Mapping[str, Any]
    lead_id: str | None = None
    id: str = field(default_factory=new_run_id)

    def as_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow": self.workflow,
            "trigger_key": self.trigger_key,
            "kind": self.kind,
            "payload": dict(self.payload),
            "lead_id": self.lead_id,
        }


@dataclass(frozen=True)
class Backoff:
    """Retries of transient failures: ``base * 2**(attempt-1)`` seconds, at most ``cap``,
    ``max_attempts`` attempts in all before the run is dead-lettered."""

    max_attempts: int = 5
    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))


class RunQueue(Protocol):
    """What the inbox and workers use; every method is safe to call from the event loop."""

    async def enqueue(self, requests: Sequence[RunRequest]) -> list[str]:
        """Queue the runs whose (workflow, trigger key) is new; the ids of those queued."""
        ...

    async def claim(self, worker: str, workflows: Collection[str] | None = None) -> RunRow | None:
        """The next run this worker may execute (of ``workflows``, when given), leased to
        it, or None."""
        ...

    async def heartbeat(self, run_id: str, worker: str) -> bool:
        """Extend the lease; False if the run is no longer this worker's."""
        ...

    async def complete(
        self,
        run_id: str,
        worker: str,
        state: Mapping[str, Any],
        *,
        before: Callable[[Connection], None] | None = None,
        claim: Collection[str] | None = None,
        after: Callable[[], Any] | None = None,
    ) -> Completed:
        """Record the run completed. ``before``: more store work to commit with it (in the
        same transaction: the effect journal's last results).
        ``claim``: in that transaction, also claim the worker's next run of these
        workflows (one trip to the store for both). ``after``: store work of its own to do
        on the same trip once that transaction committed (its value: ``Completed.after``)."""
        ...

    async def wait_approval(
        self, run_id: str, worker: str, approval_id: str, state: Mapping[str, Any]
    ) -> None:
        """Park the run until its approval is decided; its lead is free meanwhile. Parking
        is not a failed attempt: the claim that resumes it counts as the first again."""
        ...

    async def fail(
        self, run_id: str, worker: str, error: str, *, transient: bool, progressed: bool = False
    ) -> RunRow:
        """Transient: retry after a backoff, or dead-letter when attempts are used up.
        Otherwise the run ends ``failed``. The error is kept either way. An attempt that
        ``progressed`` (journaled a new write before failing) is not counted: attempts
        bound a run stuck at one place, not a long run under a fault rate."""
        ...

    async def end(self, run_id: str, status: str, error: str | None = None) -> None:
        """End a run parked for approval (``rejected``)."""
        ...

    async def skip(self, run_id: str, worker: str, reason: str) -> None:
        """End a claimed run ``skipped``: moot (what it is about no longer exists), no retry;
        ``reason`` is kept as its error."""
        ...

    async def retarget(self, run_id: str, lead_id: str) -> None:
        """The run now belongs to ``lead_id`` (its lead was merged into that one)."""
        ...

    async def follow_merge(self, source: str, destination: str) -> int:
        """The unfinished runs of lead ``source`` (merged away) belong to ``destination``."""
        ...

    async def release(
        self, run_id: str, worker: str, *, at: float | None = None, error: str | None = None
    ) -> None:
        """Give a claimed run back unfinished, the attempt not counted: at shutdown, or
        until ``at`` when a per-window limit ran out (``error`` says which)."""
        ...

    async def resume(self, run_id: str) -> bool:
        """A parked run whose approval was granted goes back to the queue."""
        ...

    async def retry(self, run_id: str) -> bool:
        """A dead or failed run goes back into its lead's order (``runs retry ID``)."""
        ...

    async def get(self, run_id: str) -> RunRow | None: ...

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]: ...


@dataclass(frozen=True)
class Completed:
    """What ``complete`` did: ``recorded``, the run is recorded completed by this worker
    (not one whose lease another worker took over meanwhile); ``next``, the run it claimed
    in the same transaction (None when none was asked for or none is claimable)."""

    recorded: bool
    next: RunRow | None = None
    after: Any = None


class SqlRunQueue:
    """The embedded ``RunQueue`` on the store's ``runs`` table (store trips: ``Store.run``,
    and ``Store.trip`` for a run's outcome).

    ``lease``: seconds a claim lasts without a heartbeat (workers renew it every third of
    it); a run whose worker died is claimed again once it runs out.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        lease: float = 60.0,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.backoff = backoff or Backoff()
        self.lease = lease
        self.rows = RunRows(store, self.clock.now)
        self.fates = LeadFates(store)
        self.effects = EffectRows(store)
        self.prepare: dict[str, Callable[[Connection, RunRow], None]] = {}
        """Per worker name: more work for the transaction that claims a run for it (the
        rotation turn its run will take: ``workflows.turns``)."""

    def claim_in(
        self, conn: Connection, worker: str, workflows: Collection[str] | None = None
    ) -> RunRow | None:
        """In ``conn``'s transaction (a store trip's): claim the next run, with what
        became of its lead read in the same transaction (``RunRow.fate``), so the executor
        need not ask the store again, and its effect journal's rows (``RunRow.effects``),
        so its journaled writes need no trip of their own for their intents."""
        run = self.rows.claim_in(conn, worker, self.lease, workflows=workflows)
        if run is None:
            return run
        effects = tuple(self.effects.for_run_in(conn, run.id))
        fate = None if run.lead_id is None else self.fates.resolve_in(conn, run.lead_id)
        run = replace(run, fate=fate, effects=effects)
        prepare = self.prepare.get(worker)
        if prepare is not None:
            prepare(conn, run)
        return run

    def _claim(self, worker: str, workflows: Collection[str] | None) -> RunRow | None:
        with self.store.engine.begin() as conn:
            return self.claim_in(conn, worker, workflows)

    async def enqueue(self, requests: Sequence[RunRequest]) -> list[str]:
        return await self.store.run(self.rows.enqueue, [r.as_row() for r in requests])

    async def claim(self, worker: str, workflows: Collection[str] | None = None) -> RunRow | None:
        return await self.store.run(self._claim, worker, workflows)

    async def claim_run(self, run_id: str, worker: str) -> RunRow | None:
        """Claim this run if it is claimable now (``workflows run`` executes its own run)."""
        return await self.store.run(self.rows.claim, worker, self.lease, only=run_id)

    async def heartbeat(self, run_id: str, worker: str) -> bool:
        return await self.store.run(self.rows.heartbeat, run_id, worker, self.lease)

    async def complete(
        self,
        run_id: str,
        worker: str,
        state: Mapping[str, Any],
        *,
        before: Callable[[Connection], None] | None = None,
        claim: Collection[str] | None = None,
        after: Callable[[], Any] | None = None,
    ) -> Completed:
        values = {"status": "completed", "state": dict(state), "error": None, "lease_until": None}
        # ``after`` opens transactions of its own, which a trip may not (``Store.trip``)
        go = self.store.run if after is not None else self.store.trip
        return await go(self._complete, run_id, worker, values, before, claim, after)

    def _complete(
        self,
        run_id: str,
        worker: str,
        values: Mapping[str, Any],
        before: Callable[[Connection], None] | None,
        claim: Collection[str] | None,
        after: Callable[[], Any] | None,
    ) -> Completed:
        with self.store.engine.begin() as conn:
            if before is not None:
                before(conn)
            recorded = self.rows.settle_in(conn, run_id, worker, values)
            following = None if claim is None else self.claim_in(conn, worker, claim)
        return Completed(recorded, following, None if after is None else after())

    async def wait_approval(
        self, run_id: str, worker: str, approval_id: str, state: Mapping[str, Any]
    ) -> None:
        await self.store.run(
            self.rows.settle,
            run_id,
            worker,
            status="waiting_approval",
            approval_id=approval_id,
            state=dict(state),
            lease_until=None,
            attempts=self.rows.table.c.attempts - 1,
        )

    async def fail(
        self, run_id: str, worker: str, error: str, *, transient: bool, progressed: bool = False
    ) -> RunRow:
        run = await self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        values: dict[str, Any] = {"error": error, "lease_until": None}
        if not transient:
            values["status"] = "failed"
        elif run.attempts >= self.backoff.max_attempts and not progressed:
            values["status"] = "dead"
        else:
            values["status"] = "queued"
            values["available_at"] = self.clock.now() + self.backoff.delay(run.attempts)
            if progressed:
                values["attempts"] = self.rows.table.c.attempts - 1
        await self.store.run(self.rows.settle, run_id, worker, **values)
        settled = await self.get(run_id)
        assert settled is not None
        return settled

    async def end(self, run_id: str, status: str, error: str | None = None) -> None:
        await self.store.run(self.rows.settle, run_id, None, status=status, error=error)

    async def skip(self, run_id: str, worker: str, reason: str) -> None:
        await self.store.run(
            self.rows.settle, run_id, worker, status="skipped", error=reason, lease_until=None
        )

    async def retarget(self, run_id: str, lead_id: str) -> None:
        await self.store.run(self.rows.retarget, run_id, lead_id)

    async def follow_merge(self, source: str, destination: str) -> int:
        return await self.store.run(self._follow_merge, source, destination)

    def _follow_merge(self, source: str, destination: str) -> int:
        with self.store.engine.begin() as conn:
            return self.rows.follow_merge(conn, source, destination)

    async def release(
        self, run_id: str, worker: str, *, at: float | None = None, error: str | None = None
    ) -> None:
        attempts = self.rows.table.c.attempts
        extra = {} if error is None else {"error": error}
        await self.store.run(
            self.rows.settle,
            run_id,
            worker,
            status="queued",
            available_at=self.clock.now() if at is None else at,
            lease_until=None,
            worker=None,
            attempts=attempts - 1,
            **extra,
        )

    async def resume(self, run_id: str) -> bool:
        return await self.store.run(self.rows.requeue, run_id, ("waiting_approval",))

    async def retry(self, run_id: str) -> bool:
        return await self.store.run(self.rows.requeue, run_id, ("dead", "failed"), attempts=0)

    async def get(self, run_id: str) -> RunRow | None:
        return await self.store.run(self.rows.get, run_id)

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        return await self.store.run(self.rows.list, status=status, workflow=workflow, limit=limit)
