"""Helpers the packaged workflows share: dates, event fields, idempotent writes, owners.

Every packaged write goes through ``once``: inside the effect journal (so a retried run
never repeats it), the write first reads Close for what it would create (so a second run
for the same event, or a replayed one, finds the first run's object instead of adding
another).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from closeguard.tools import NotFound
from closeguard.workflows.definition import Context

if TYPE_CHECKING:
    from closeguard.tools import models as m
    from closeguard.tools.client import CloseClient

T = TypeVar("T")


def parse_time(text: str | None) -> datetime | None:
    """An ISO date or datetime from Close as an aware datetime (UTC when no zone)."""
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def now_on(ctx: Context, lead_id: str) -> str:
    """The lead ``lead_id`` (from the event) is now: the destination the run followed
    when it is the run's own lead and was merged away, else ``lead_id`` itself."""
    if ctx.lead_id and lead_id == ctx.workflow.lead_for(ctx.event):
        return ctx.lead_id
    return lead_id


def event_time(ctx: Context) -> datetime:
    """When the triggering event happened (the tick for schedules), else the clock's now.

    Dates derived from it (due dates, digests) come out the same when a run is retried.
    """
    event = ctx.event or {}
    return parse_time(event.get("date_created")) or ctx.tick or ctx.now()


def business_days_after(start: date, days: int) -> date:
    """``days`` working days (Monday to Friday) after ``start``; 0 is the next working day
    from ``start`` on (``start`` itself when it is one)."""
    day = start
    while day.weekday() >= 5:
        day += timedelta(days=1)
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


async def once(
    ctx: Context,
    key: str,
    find: Callable[[], Awaitable[T | None]],
    write: Callable[[], Awaitable[T]],
) -> dict[str, Any]:
    """Write at most once: journaled under ``key``, and only when ``find`` sees nothing.

    The result is JSON data (the model's dict), as the journal gives it back on a replay.
    ``find`` is called once per attempt: when the journal has just read Close back (a
    retried run), the write follows without reading again.
    """
    looked = False

    async def look() -> T | None:
        nonlocal looked
        looked = True
        return await find()

    async def ensure() -> T:
        found = None if looked else await find()
        if found is not None:
            ctx.log.info("%s: already in Close, nothing written", key)
            return found
        return await write()

    result: dict[str, Any] = await ctx.effect(key, ensure, find=look)
    return result


async def lead_tasks(client: CloseClient, lead_id: str) -> list[m.Task]:
    return [task async for task in client.tasks.iter(lead_id=lead_id)]


async def find_task(
    client: CloseClient,
    lead_id: str,
    text: str,
    *,
    since: datetime | None = None,
    prefix: bool = False,
    open_only: bool = False,
) -> m.Task | None:
    """A task on the lead with exactly this text (or starting with it, with ``prefix``),
    created at or after ``since`` (and not completed, with ``open_only``)."""
    for task in await lead_tasks(client, lead_id):
        created = parse_time(task.date_created)
        same = (task.text or "").startswith(text) if prefix else task.text == text
        if open_only and task.is_complete:
            continue
        if same and (since is None or created is None or created >= since):
            return task
    return None


def task_head(template: str) -> str:
    """What every task made from ``template`` starts with: its text before the first
    ``{`` (``"Intro call: {lead}"`` -> ``"Intro call:"``), stripped."""
    return template.split("{", 1)[0].strip() or template


async def find_note(client: CloseClient, lead_id: str, starts: str) -> m.NoteActivity | None:
    """A note on the lead whose text starts with ``starts``."""
    async for note in client.notes.iter(lead_id=lead_id):
        if (note.note or "").startswith(starts):
            return note
    return None


async def owner_field(ctx: Context, name: str | None) -> str | None:
    """The id of the lead custom field of type ``user`` called ``name`` (any case), if any
    (from the organization facts: read once per process).

    Close has no built-in lead owner; teams add a user field, usually "Lead Owner".
    """
    if not name:
        return None
    for field in await ctx.facts.lead_custom_fields():
        if (field.name or "").casefold() == name.casefold() and field.type == "user":
            return field.id
    return None


async def lead_or_none(client: CloseClient, lead_id: str) -> m.Lead | None:
    try:
        return await client.leads.get(lead_id)
    except NotFound:
        return None


def day(value: datetime | date) -> str:
    return value.isoformat()[:10]
