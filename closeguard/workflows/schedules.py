"""Schedules: APScheduler fires each schedule tick into the inbox under (schedule, tick).

The job APScheduler runs does nothing itself; a listener on job submission takes the tick's
*scheduled* time (not the moment it fired) and asks the inbox for the run of that tick.
Every process may run schedules: they compute the same tick times (intervals are anchored
at a fixed epoch, not at each process's start), and the inbox keeps one run per tick, so
each tick runs once with no leader election. A tick missed while no process was running is
not made up. Upkeep jobs (``upkeep``: the daily prune of ``closeguard run --retain``) run
in the same scheduler, first at start, then every ``every`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from closeguard.workflows.activity import Activity, Feed
from closeguard.workflows.definition import ScheduleTrigger, Workflow
from closeguard.workflows.inbox import Inbox

__all__ = ["ANCHOR", "Schedules", "Upkeep", "aps_trigger"]

log = logging.getLogger("closeguard.workflows.schedules")

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
"""Where interval schedules start counting, the same in every process."""


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _DAYS:
        return _DAYS.index(token[:3])
    return int(token) % 7


def crontab_days(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler day names.

    APScheduler 3 counts days from Monday = 0 and its ``from_crontab`` passes the field
    through, so ``1-5`` would mean Tuesday to Saturday; names are unambiguous.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            start, end = span.split("-", 1)
            first, last = _day(start), _day(end)
            if end.strip() == "7":
                last = 7
        else:
            first = last = _day(span)
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def aps_trigger(trigger: ScheduleTrigger) -> Any:
    """APScheduler's trigger for a workflow's schedule (crontab semantics for cron)."""
    if trigger.cron is not None:
        fields = trigger.cron.split()
        if len(fields) != 5:
            raise ValueError(f"a cron schedule has 5 fields, not {len(fields)}: {trigger.cron!r}")
        minute, hour, day, month, weekday = fields
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_days(weekday),
            timezone=trigger.timezone,
        )
    assert trigger.every is not None
    return IntervalTrigger(
        seconds=trigger.every.total_seconds(), start_date=ANCHOR, timezone=trigger.timezone
    )


async def _noop() -> None:
    return None


@dataclass(frozen=True)
class Upkeep:
    """A job of the runtime's own (not a workflow): ``run`` at start, then every ``every``
    seconds, one at a time."""

    name: str
    run: Callable[[], Awaitable[object]]
    every: float


class Schedules:
    """One APScheduler job per scheduled workflow, feeding ticks to ``inbox``, and the
    ``upkeep`` jobs."""

    def __init__(
        self,
        inbox: Inbox,
        workflows: Iterable[Workflow],
        *,
        feed: Feed | None = None,
        upkeep: Iterable[Upkeep] = (),
    ) -> None:
        self.inbox = inbox
        self.workflows = [w for w in workflows if isinstance(w.trigger, ScheduleTrigger)]
        self.feed = feed or Feed()
        self.upkeep = {f"upkeep:{u.name}": u for u in upkeep}
        self.scheduler: AsyncIOScheduler | None = None
        self._pending: set[asyncio.Task[str | None]] = set()

    def on_submitted(self, event: JobSubmissionEvent) -> None:
        """APScheduler's listener: one ``add_tick`` per scheduled time of the job."""
        if event.job_id in self.upkeep:
            return
        for when in event.scheduled_run_times:
            task = asyncio.get_running_loop().create_task(self.tick(event.job_id, when))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def tick(self, workflow: str, when: datetime) -> str | None:
        """Queue ``workflow``'s run for the tick scheduled at ``when``; its id if new."""
        at = when.astimezone(UTC)
        try:
            run_id = await self.inbox.add_tick(workflow, at)
        except Exception:
            log.exception("could not queue the %s tick of %s", at.isoformat(), workflow)
            return None
        status = "new" if run_id else "duplicate"
        self.feed.emit(Activity("tick", f"{workflow} tick {at:%H:%M:%S}", workflow, run_id, status))
        return run_id

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        for workflow in self.workflows:
            assert isinstance(workflow.trigger, ScheduleTrigger)
            scheduler.add_job(
                _noop,
                aps_trigger(workflow.trigger),
                id=workflow.name,
                coalesce=True,
                misfire_grace_time=60,
                max_instances=1000,
            )
        for job_id, upkeep in self.upkeep.items():
            scheduler.add_job(
                upkeep.run,
                IntervalTrigger(seconds=upkeep.every, timezone=UTC),
                id=job_id,
                next_run_time=datetime.now(UTC),
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )
        scheduler.add_listener(self.on_submitted, EVENT_JOB_SUBMITTED)
        scheduler.start()
        self.scheduler = scheduler

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire ticks until ``stop`` is set."""
        self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
