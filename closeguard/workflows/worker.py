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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime

from closeguard.guardrails import Approvals
from closeguard.store import Store
from closeguard.store.runs import RunRow
from closeguard.telemetry.observe import observe_run
from closeguard.workflows.activity import Activity, Feed
from closeguard.workflows.definition import Workflow
from closeguard.workflows.executor import Executor, Outcome, RunSpec, describe, is_transient
from closeguard.workflows.queue import RunQueue

__all__ = ["Worker", "spec_of"]

log = logging.getLogger("closeguard.workflows.worker")


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
        self._nudges: asyncio.Queue[None] = asyncio.Queue()
        self.executed = 0

    def nudge(self) -> None:
        """New runs were queued: wake one idle lane (not all of them) to claim."""
        if self._nudges.qsize() < self.concurrency:
            self._nudges.put_nowait(None)

    async def run_one(self) -> bool:
        """Claim and execute one run; False when none is claimable."""
        run = await self.queue.claim(self.name, self.workflows.keys())
        if run is None:
            return False
        await self.execute(run)
        return True

    async def execute(self, run: RunRow) -> None:
        """Execute a run this worker has claimed and settle it in the queue."""
        beat = asyncio.create_task(self._beat(run.id))
        try:
            await self._execute(run)
        except asyncio.CancelledError:
            await asyncio.shield(self.queue.release(run.id, self.name))
            raise
        except Exception as exc:
            log.exception("run %s: the worker failed around it", run.id)
            error = describe(exc)
            settled = await self.queue.fail(run.id, self.name, error, transient=is_transient(exc))
            self._report(run, settled.status, error)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self.executed += 1

    async def _beat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await self.queue.heartbeat(run_id, self.name)

    async def _execute(self, run: RunRow) -> None:
        workflow = self.workflows.get(run.workflow)
        if workflow is None:
            error = f"workflow {run.workflow!r} is not enabled in this process"
            await self.queue.fail(run.id, self.name, error, transient=False)
            self._report(run, "failed", error)
            return
        resume = None
        if run.approval_id:
            resume = {"approval_id": run.approval_id, "status": "approved"}
            self._report(run, "resumed", f"{run.approval_id} approved")
        else:
            self._report(run, "started" if run.attempts == 1 else f"attempt {run.attempts}")
        with observe_run(run.workflow, run.id, run.attempts) as seen:
            outcome = await self.executor.execute(workflow, spec_of(run), resume=resume)
            seen.outcome = outcome.status
        await self._settle(run, outcome)

    async def _settle(self, run: RunRow, outcome: Outcome) -> None:
        if outcome.lead_id is not None and outcome.lead_id != run.lead_id:
            await self.queue.retarget(run.id, outcome.lead_id)
            self._report(run, "followed a merge", f"{run.lead_id} -> {outcome.lead_id}")
        if outcome.status == "skipped":
            reason = outcome.error or "moot"
            await self.queue.skip(run.id, self.name, reason)
            self._report(run, "skipped", reason)
            await self._forget(run.id, "skipped")
        elif outcome.status == "completed":
            await self.queue.complete(run.id, self.name, outcome.state)
            self._report(run, "completed")
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

    async def _forget(self, run_id: str, status: str = "completed") -> None:
        """Drop the checkpoints of a run now recorded completed (or skipped) by this worker
        (not one whose lease another worker took over meanwhile: it may still need them)."""
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

    async def check_approvals(self) -> int:
        """Move parked runs whose approval was decided; how many moved."""
        moved = 0
        await self.store.run(self.approvals.expire)
        for run in await self.queue.list(status="waiting_approval", limit=500):
            if run.approval_id is None:
                continue
            approval = await self.store.run(self.approvals.get, run.approval_id)
            status = "missing" if approval is None else approval.status
            if status == "pending":
                continue
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
        try:
            await asyncio.gather(*lanes, watcher)
        finally:
            for task in (*lanes, watcher):
                task.cancel()
            await asyncio.gather(*lanes, watcher, return_exceptions=True)

    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                busy = await self.run_one()
            except Exception:
                log.exception("worker lane failed; carrying on")
                busy = False
            if busy or stop.is_set():
                continue
            await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until a nudge (taken by this lane alone), ``stop``, or ``poll`` seconds."""
        nudged = asyncio.ensure_future(self._nudges.get())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {nudged, stopped}, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (nudged, stopped):
                waiter.cancel()
            await asyncio.gather(nudged, stopped, return_exceptions=True)

    async def _watch_approvals(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check_approvals()
            except Exception:
                log.exception("checking approvals failed; will try again")
            await _first(stop, within=self.approvals_every)


async def _first(*events: asyncio.Event, within: float) -> None:
    """Wait until one of ``events`` is set or ``within`` seconds pass."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
