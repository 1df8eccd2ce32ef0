"""Workers: claim runs from the queue, execute them, settle the outcome.

A worker runs ``concurrency`` runs at a time. Each claim is leased and the lease renewed
while the run executes, so a run whose process died is claimed again once its lease runs
out and continues from its last checkpoint (writes already made are in the effect journal).
Outcomes: completed; waiting for an approval (parked, its lead free); failed for good (a
policy denial, a bug: error kept); failed for now (Close 5xx/429 after the client's own
retries, no connection: retried with backoff, then dead-lettered); skipped (moot: its lead,
deal or task is gone; the reason kept, no retry). A run that followed its lead's merge is
recorded on the destination lead.

``check_approvals`` looks at parked runs: approved ones go back to the queue (and resume
the step that asked), rejected or expired ones end ``rejected`` without that call.
On stop, runs in progress finish; a run still going after the grace period is cancelled
and released (its checkpoint and journal keep what it did), to be claimed again.

Trips to the store are few: a lane that completes a run records it and claims its next run
in one transaction (with the journal's last results), new runs wake one idle lane each, and
a lane claims again only when something may have changed (a nudge since its last claim, or
its ``poll`` timer), so an idle worker does not ask the store in vain. The inbox may claim
a new run for an idle lane in the very transaction that queues it (``take``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial

from sqlalchemy import Connection

from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.store.runs import RunRow
from closeguard.telemetry.observe import observe_run
from closeguard.workflows.activity import Activity, Feed
from closeguard.workflows.definition import Workflow
from closeguard.workflows.executor import Executor, Outcome, RunSpec, describe, is_transient
from closeguard.workflows.queue import RunQueue, SqlRunQueue

__all__ = ["Worker", "spec_of"]

log = logging.getLogger("closeguard.workflows.worker")
RIDE = 0.2
"""Seconds the approvals watcher's look waits to ride an outcome's trip."""


def spec_of(run: RunRow) -> RunSpec:
    """The executor's view of a stored run."""
    tick = run.payload.get("tick")
    return RunSpec(
        run_id=run.id,
        workflow=run.workflow,
        event=run.payload.get("event"),
        tick=datetime.fromisoformat(tick) if tick else None,
        params=run.payload.get("params") or {},
        lead_id=run.lead_id,
        fate=run.fate,
    )


class Worker:
    """Executes queued runs of ``workflows`` (see the module doc)."""

    def __init__(
        self,
        queue: RunQueue,
        executor: Executor,
        workflows: Mapping[str, Workflow],
        *,
        store: Store,
        name: str | None = None,
        concurrency: int = 4,
        poll: float = 0.5,
        heartbeat: float = 20.0,
        approvals_every: float = 2.0,
        feed: Feed | None = None,
    ) -> None:
        self.queue = queue
        self.executor = executor
        self.workflows = dict(workflows)
        self.store = store
        self.approvals = Approvals(store)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency
        self.poll = poll
        self.heartbeat = heartbeat
        self.approvals_every = approvals_every
        self.feed = feed or Feed()
        self.executed = 0
        self.journal = executor.journal
        self.journal.defer = True
        executor.defer_audit = True
        self.turns = self.journal.turns
        if isinstance(queue, SqlRunQueue):
            queue.prepare[self.name] = partial(self.turns.take_in, workflows=self.workflows)
        self._generation = 0
        """The store trip (its number in ``Store.trips``) that queued the runs of the
        latest nudge: a lane whose claim (a later trip) found nothing claims again only once
        it moved (or its poll timer ran out)."""
        self._waiting: list[asyncio.Future[bool]] = []
        self._handed: deque[RunRow] = deque()
        self._credit = 0
        self._claimed_at: dict[str, int] = {}
        """Runs handed to lanes (``take``) whose nudge is still to come: not a wake-up."""
        self._completing = 0
        self._unclaimed = 0
        """Nudges (runs announced, not handed to a lane) less the runs claims found since:
        when none is left, a lane whose claim came before the last nudge need not claim."""
        self._looked = float("-inf")
        """When a claim last found nothing to claim (the loop's clock): an idle lane's poll
        timer claims only if none did for ``poll`` seconds."""
        self._look_wanted: asyncio.Future[list[tuple[RunRow, str]] | None] | None = None
        """The approvals watcher's look, waiting to ride the next outcome's trip."""

    @property
    def idle_lanes(self) -> int:
        """Lanes waiting for work now, or about to (their outcome's trip claims with it, so
        a run handed to them meanwhile is theirs next): read during the inbox's trip, an
        estimate."""
        return len(self._waiting) + self._completing

    def nudge(self, queued_by: int | None = None) -> None:
        """New runs were queued (by the store trip numbered ``queued_by``, else by one
        already made): wake one idle lane (not all of them) to claim."""
        if self._credit:
            self._credit -= 1
            return
        trip = self.store.trips if queued_by is None else queued_by
        self._generation = max(self._generation, trip)
        self._unclaimed += 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.pop(0)
            if not waiter.done():
                waiter.set_result(True)
                return

    def claim_in(self, conn: Connection, count: int) -> list[RunRow]:
        """In the inbox's transaction (its store trip): claim up to ``count`` runs for idle
        lanes (``SqlRunQueue`` only; none otherwise)."""
        if not isinstance(self.queue, SqlRunQueue):
            return []
        runs = []
        for _ in range(count):
            run = self.queue.claim_in(conn, self.name, self.workflows.keys())
            if run is None:
                break
            runs.append(run)
        return runs

    def take(self, runs: Sequence[RunRow], nudges: int) -> None:
        """Runs the inbox claimed for this worker: one idle lane each. ``nudges``: how many
        nudges for these runs are about to come (they wake nobody)."""
        self._credit += nudges
        for run in runs:
            self._handed.append(run)
            self._wake_one()

    async def run_one(self) -> bool:
        """Claim and execute one run; False when none is claimable."""
        run = await self.queue.claim(self.name, self.workflows.keys())
        if run is None:
            return False
        await self.execute(run)
        return True

    async def execute(self, run: RunRow, *, claim_next: bool = False) -> RunRow | None:
        """Execute a run this worker has claimed and settle it in the queue; with
        ``claim_next``, the next run claimed as it settled (or None)."""
        beat = asyncio.create_task(self._beat(run.id))
        following: RunRow | None = None
        if run.effects is not None:
            self.journal.know(run.id, list(run.effects))
        try:
            following = await self._execute(run, claim_next)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(run.id))
            raise
        except Exception as exc:
            log.exception("run %s: the worker failed around it", run.id)
            error = describe(exc)
            await self._flush(run.id)
            settled = await self.queue.fail(run.id, self.name, error, transient=is_transient(exc))
            self._report(run, settled.status, error)
        finally:
            self.journal.forget(run.id)
            self.turns.settled(run, completed=False)
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self.executed += 1
        return following

    async def _release(self, run_id: str) -> None:
        await self._flush(run_id)
        await self.queue.release(run_id, self.name)

    async def _flush(self, run_id: str) -> None:
        """Commit what the run left for its outcome's transaction (journal results, audit
        rows), before an outcome recorded on its own."""
        await self.journal.flush(run_id)
        audit = self.executor.take_audit(run_id)
        if audit is not None:
            await audit.aflush()

    async def _beat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await self.queue.heartbeat(run_id, self.name)

    async def _execute(self, run: RunRow, claim_next: bool) -> RunRow | None:
        workflow = self.workflows.get(run.workflow)
        if workflow is None:
            error = f"workflow {run.workflow!r} is not enabled in this process"
            await self.queue.fail(run.id, self.name, error, transient=False)
            self._report(run, "failed", error)
            return None
        resume = None
        if run.approval_id:
            resume = {"approval_id": run.approval_id, "status": "approved"}
            self._report(run, "resumed", f"{run.approval_id} approved")
        else:
            self._report(run, "started" if run.attempts == 1 else f"attempt {run.attempts}")
        with observe_run(run.workflow, run.id, run.attempts) as seen:
            outcome = await self.executor.execute(workflow, spec_of(run), resume=resume)
            seen.outcome = outcome.status
        self.turns.settled(run, outcome.status == "completed")
        return await self._settle(run, outcome, claim_next)

    async def _settle(self, run: RunRow, outcome: Outcome, claim_next: bool) -> RunRow | None:
        if outcome.status == "completed" and (outcome.lead_id in (None, run.lead_id)):
            return await self._complete(run, outcome, claim_next)
        await self._flush(run.id)
        if outcome.lead_id is not None and outcome.lead_id != run.lead_id:
            await self.queue.retarget(run.id, outcome.lead_id)
            self._report(run, "followed a merge", f"{run.lead_id} -> {outcome.lead_id}")
        if outcome.status == "skipped":
            reason = outcome.error or "moot"
            await self.queue.skip(run.id, self.name, reason)
            self._report(run, "skipped", reason)
            await self._forget(run.id, "skipped")
        elif outcome.status == "completed":
            done = await self.queue.complete(run.id, self.name, outcome.state)
            self._report(run, "completed")
            if done.recorded:
                await self._forget(run.id)
        elif outcome.status == "waiting_approval":
            assert outcome.approval_id is not None
            await self.queue.wait_approval(run.id, self.name, outcome.approval_id, outcome.state)
            self._report(run, "waiting_approval", outcome.approval_id)
        elif outcome.status == "deferred":
            await self.queue.release(run.id, self.name, at=outcome.retry_at, error=outcome.error)
            self._report(run, "deferred", outcome.error)
        elif outcome.status == "rejected":
            await self.queue.end(run.id, "rejected", outcome.error)
            self._report(run, "rejected", outcome.error)
        else:
            error = outcome.error or "failed"
            settled = await self.queue.fail(
                run.id, self.name, error, transient=outcome.transient, progressed=outcome.progressed
            )
            self._report(run, settled.status if settled.status != "queued" else "retrying", error)
        return None

    async def _complete(self, run: RunRow, outcome: Outcome, claim_next: bool) -> RunRow | None:
        """Record the run completed, with the journal's last results and (``claim_next``)
        the lane's next claim, in one transaction."""
        pending = self.journal.take(run.id)
        rows = self.journal.rows
        audit = self.executor.take_audit(run.id)

        def before(conn: Connection) -> None:
            rows.done_in(conn, pending)
            if audit is not None:
                audit.write_in(conn)

        claim = self.workflows.keys() if claim_next and not self._handed else None
        if claim is not None:
            self._claimed_at[run.id] = self.store.trips + 1  # the trip below
        look, self._look_wanted = self._look_wanted, None
        extra = {} if look is None else {"after": self._look_quietly}
        self._completing += claim is not None
        try:
            done = await self.queue.complete(
                run.id, self.name, outcome.state, before=before, claim=claim, **extra
            )
        except Exception:
            if look is not None and not look.done():
                look.set_result(None)
            if audit is not None:
                audit.restore()
                await audit.aflush()
            raise
        finally:
            self._completing -= claim is not None
        if look is not None and not look.done():
            look.set_result(done.after)
        if claim is not None:
            self._claimed(done.next)
        if audit is not None:
            audit.committed()
        self._report(run, "completed")
        if done.recorded:
            await self._forget(run.id, check=False)
        return done.next

    async def _forget(self, run_id: str, status: str = "completed", *, check: bool = True) -> None:
        """Drop the checkpoints of a run now recorded completed (or skipped) by this worker
        (not one whose lease another worker took over meanwhile: it may still need them);
        ``check=False``: the caller knows it is."""
        if check:
            settled = await self.queue.get(run_id)
            if settled is None or settled.status != status or settled.worker != self.name:
                return
        try:
            await self.executor.forget(run_id)
        except Exception:
            log.exception("run %s: could not delete its checkpoints; they are kept", run_id)

    def _report(self, run: RunRow, status: str, detail: str | None = None) -> None:
        text = f"{run.workflow} {status}" + (f": {detail}" if detail else "")
        self.feed.emit(Activity("run", text, run.workflow, run.id, status))

    def _claimed(self, run: RunRow | None) -> None:
        """A claim looked at the queue now: one that found nothing spares the idle lanes'
        poll timers a look of their own (one that found a run does not: there may be more)."""
        if run is None:
            self._looked = asyncio.get_running_loop().time()
        elif self._unclaimed:
            self._unclaimed -= 1

    def _look(self) -> list[tuple[RunRow, str]]:
        """(A store trip.) Expire approvals past their time; the parked runs whose approval
        was decided, with its status (``missing``: gone)."""
        assert isinstance(self.queue, SqlRunQueue)
        self.approvals.expire()
        return self._decided_among(self.queue.rows.list(status="waiting_approval", limit=500))

    def _decided_among(self, parked: Sequence[RunRow]) -> list[tuple[RunRow, str]]:
        """(A store trip.) Those of the ``parked`` runs whose approval was decided, with its
        status (``missing``: gone)."""
        decided: list[tuple[RunRow, str]] = []
        for run in parked:
            if run.approval_id is None:
                continue
            approval = self.approvals.get(run.approval_id)
            status = "missing" if approval is None else approval.status
            if status != "pending":
                decided.append((run, status))
        return decided

    def _look_quietly(self) -> list[tuple[RunRow, str]] | None:
        """``_look`` riding an outcome's trip after its commit: None if it failed (the
        watcher then looks on a trip of its own)."""
        try:
            return self._look()
        except Exception:
            log.exception("looking at parked runs failed; will look again")
            return None

    async def _decided(self) -> list[tuple[RunRow, str]]:
        """The parked runs whose approval was decided (see ``check_approvals``)."""
        if isinstance(self.queue, SqlRunQueue):
            return await self.store.run(self._look)
        await self.store.run(self.approvals.expire)
        parked = await self.queue.list(status="waiting_approval", limit=500)
        return await self.store.run(self._decided_among, parked)

    async def _ridden(self) -> list[tuple[RunRow, str]]:
        """``_decided``, on the next outcome's trip if one comes within ``RIDE`` seconds
        (runs flowing: no trip of its own), else on a trip of its own."""
        if not isinstance(self.queue, SqlRunQueue):
            return await self._decided()
        wanted = self._look_wanted = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(wanted), RIDE)
        except TimeoutError:
            if self._look_wanted is wanted:
                self._look_wanted = None
                return await self._decided()
        found = await wanted
        return found if found is not None else await self._decided()

    async def check_approvals(self, decided: list[tuple[RunRow, str]] | None = None) -> int:
        """Move parked runs whose approval was decided (``decided``: as looked up already);
        how many moved."""
        moved = 0
        for run, status in await self._decided() if decided is None else decided:
            if status == "approved":
                moved += await self.queue.resume(run.id)
                self.nudge()
            else:
                error = f"approval {run.approval_id} was {status}"
                await self.queue.end(run.id, "rejected", error)
                self._report(run, "rejected", error)
                moved += 1
        return moved

    async def run(self, stop: asyncio.Event) -> None:
        """Execute runs until ``stop`` is set; the runs in progress then finish."""
        lanes = [asyncio.create_task(self._lane(stop)) for _ in range(self.concurrency)]
        watcher = asyncio.create_task(self._watch_approvals(stop))
        waker = asyncio.create_task(self._wake_all_on(stop))
        try:
            await asyncio.gather(*lanes, watcher)
        finally:
            for task in (*lanes, watcher, waker):
                task.cancel()
            await asyncio.gather(*lanes, watcher, waker, return_exceptions=True)
            while self._handed:
                await asyncio.shield(self._release(self._handed.popleft().id))

    async def _lane(self, stop: asyncio.Event) -> None:
        following: RunRow | None = None
        try:
            while not stop.is_set():
                run, following = following, None
                seen = -1
                try:
                    if run is None and self._handed:
                        run = self._handed.popleft()
                    if run is None:
                        seen = self.store.trips + 1  # the claim's trip
                        run = await self.queue.claim(self.name, self.workflows.keys())
                        self._claimed(run)
                    if run is not None:
                        following = await self.execute(run, claim_next=True)
                        # the settle's claim looked as of this generation
                        seen = self._claimed_at.pop(run.id, -1)
                except Exception:
                    log.exception("worker lane failed; carrying on")
                seen_all = seen > self._generation or not self._unclaimed
                idle = seen_all and not self._handed
                if following is None and idle and not stop.is_set():
                    await self._idle(stop)
        finally:
            if following is not None:
                await asyncio.shield(self._release(following.id))

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until a nudge (taken by this lane alone), ``stop``, or ``poll`` seconds in which
        no claim looked at the queue (another lane's claims look for this one too)."""
        loop = asyncio.get_running_loop()
        while not await self._wait(stop) and not self._handed:
            if loop.time() - self._looked >= self.poll:
                return

    async def _wait(self, stop: asyncio.Event) -> bool:
        """Until a nudge, ``stop`` or ``poll`` seconds; False when the time ran out.

        One future, settled by a nudge (True), ``stop`` (True, by ``_wake_all_on``) or a
        timer (False): no task, ``asyncio.wait`` or gather per wait (one a run).
        """
        if stop.is_set():
            return True
        loop = asyncio.get_running_loop()
        nudged: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(nudged)
        timer = loop.call_later(self.poll, _settle, nudged, False)
        try:
            woken = await nudged
        finally:
            timer.cancel()
            if nudged in self._waiting:
                self._waiting.remove(nudged)
        return woken or stop.is_set()

    async def _wake_all_on(self, stop: asyncio.Event) -> None:
        """When ``stop`` is set, wake every waiting lane."""
        await stop.wait()
        for waiter in self._waiting:
            _settle(waiter, True)

    async def _watch_approvals(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_approvals(await self._ridden())
            except Exception:
                log.exception("checking approvals failed; will try again")
            await _first(stop, within=self.approvals_every)


def _settle(waiter: asyncio.Future[bool], woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)


async def _first(*events: asyncio.Event, within: float) -> None:
    """Wait until one of ``events`` is set or ``within`` seconds pass."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
