"""Schedules: APScheduler ticks enter the inbox under (schedule, scheduled time), once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent

from closeguard.guardrails import Policy
from closeguard.store import Store
from closeguard.workflows.definition import Context, ScheduleTrigger, Workflow
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.schedules import Schedules, aps_trigger, crontab_days

POLICY = Policy.from_dict({"name": "nothing", "grants": {"lead": "read"}})


async def noop(ctx: Context) -> None:
    return None


def every(seconds: float) -> Workflow:
    return Workflow("often", ScheduleTrigger(every=timedelta(seconds=seconds)), POLICY, (noop,))


def test_interval_ticks_are_anchored_the_same_in_every_process() -> None:
    now = datetime(2026, 11, 27, 10, 7, 31, tzinfo=UTC)
    trigger = ScheduleTrigger(every=timedelta(minutes=15))
    first, second = aps_trigger(trigger), aps_trigger(trigger)
    assert first.get_next_fire_time(None, now) == second.get_next_fire_time(None, now)
    assert first.get_next_fire_time(None, now) == datetime(2026, 11, 27, 10, 15, tzinfo=UTC)


def test_cron_schedules_follow_their_timezone() -> None:
    trigger = aps_trigger(ScheduleTrigger(cron="0 8 * * 1-5", timezone="Europe/Paris"))
    friday_evening = datetime(2026, 11, 27, 18, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, friday_evening)
    assert fire.astimezone(UTC) == datetime(2026, 11, 30, 7, tzinfo=UTC)


def test_crontab_day_numbers_mean_what_they_mean_in_crontab() -> None:
    assert crontab_days("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_days("0") == crontab_days("7") == crontab_days("sun") == "sun"
    assert crontab_days("*/2") == "sun,tue,thu,sat"
    assert crontab_days("5-7") == "sun,fri,sat"
    assert crontab_days("mon-wed,6") == "mon,tue,wed,sat"
    assert crontab_days("*") == "*"


async def test_a_tick_fired_by_two_processes_runs_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    workflow = every(60)
    first = Schedules(Inbox(store, [workflow]), [workflow])
    second = Schedules(Inbox(store, [workflow]), [workflow])
    tick = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
    for schedules in (first, second):
        schedules.on_submitted(JobSubmissionEvent(EVENT_JOB_SUBMITTED, "often", "default", [tick]))
        await schedules.stop()
    runs = await first.inbox.queue.list()
    assert [(r.workflow, r.trigger_key, r.payload) for r in runs] == [
        ("often", "tick:2026-11-27T10:15:00+00:00", {"tick": "2026-11-27T10:15:00+00:00"})
    ]


async def test_the_scheduler_fires_ticks_into_the_inbox(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    workflow = every(0.2)
    schedules = Schedules(Inbox(store, [workflow]), [workflow])
    stop = asyncio.Event()
    task = asyncio.create_task(schedules.run(stop))
    runs = []
    for _ in range(250):
        runs = await schedules.inbox.queue.list()
        if len(runs) >= 2:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(runs) >= 2
    ticks = sorted(datetime.fromisoformat(r.payload["tick"]) for r in runs)
    assert all(t.microsecond % 200_000 == 0 for t in ticks), "ticks sit on the anchored grid"
