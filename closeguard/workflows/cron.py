"""A workflow's schedule as APScheduler's trigger, with crontab's meaning of weekdays.

Apart from ``schedules`` (the scheduler, which feeds the inbox), so a rule file is checked
without importing the scheduler or the store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from closeguard.workflows.definition import ScheduleTrigger

__all__ = ["ANCHOR", "aps_trigger", "crontab_days"]

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
