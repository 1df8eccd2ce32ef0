"""Event Log catch-up: events missed by the receiver (down, paused, never delivered) still
reach the inbox.

On start and every minute, ``CatchUp`` reads ``GET /event/`` from the last point it saw,
minus a few minutes of overlap (Close says events can appear in the log slightly late, and
an event's ``date_updated`` can move when Close consolidates changes), and adds every event
to the same inbox as the webhooks. The inbox deduplicates by event id, so the overlap, and
an event that arrives both ways, have one effect.

- Filters: only ``date_updated__gte`` (and ``__lt`` for a closed time slice), a combination
  the Event Log supports with no other filter; pages follow ``cursor_next`` with the same
  filters, as Close requires.
- Order: Close pages newest first; each slice is added to the inbox oldest first, in one
  ``add_many`` (one transaction), so the runtime sees events in the order they happened.
- Progress: the position (``store.cursors``, ``catchup.event_log``) moves only after the
  slice's events are stored, so a crash mid-read re-reads rather than skips. A long gap is
  read in slices (an hour by default), each stored and recorded before the next, so memory
  stays bounded and progress survives.
- Never further back than the Event Log's 30-day retention. With no saved position (first
  start) it reads back ``initial_lookback`` (the overlap by default), not 30 days of history.
- Every read goes through the given ``CloseClient``: in the runtime one guarded by a policy
  that grants ``event: read``, audited like any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from closeguard.store.cursors import CATCHUP_POSITION
from closeguard.tools import Clock, CloseClient, CloseguardError, SystemClock

__all__ = ["CatchUp", "CatchUpResult", "EventBatchSink", "PositionStore"]

log = logging.getLogger("closeguard.workflows.catchup")

RETENTION = timedelta(days=30)
RETENTION_MARGIN = timedelta(minutes=1)
SOURCE = "catchup"


class EventBatchSink(Protocol):
    """The inbox, taking a slice of events at once: how many of them were new."""

    async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int: ...


class PositionStore(Protocol):
    """Named positions, read and written without blocking the loop (``store.Cursors``)."""

    async def aget(self, name: str) -> str | None: ...
    async def aset(self, name: str, value: str) -> None: ...


@dataclass(frozen=True)
class CatchUpResult:
    """One pass: events read from the log, new ones stored, and the position saved."""

    read: int
    stored: int
    position: str


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class CatchUp:
    """Reads the Event Log into ``inbox`` from the position kept in ``positions``.

    ``wanted``: which events to add (e.g. those some enabled workflow subscribes to); all
    by default. ``run_once()`` does one pass; ``run_forever()`` passes on start, every
    ``every`` seconds and whenever ``trigger()`` is called (a reactivated subscription).
    """

    def __init__(
        self,
        client: CloseClient,
        inbox: EventBatchSink,
        positions: PositionStore,
        *,
        clock: Clock | None = None,
        overlap: timedelta = timedelta(minutes=5),
        slice_length: timedelta = timedelta(hours=1),
        initial_lookback: timedelta | None = None,
        wanted: Callable[[Mapping[str, Any]], bool] | None = None,
        page_size: int = 50,
        name: str = CATCHUP_POSITION,
    ) -> None:
        self.client = client
        self.inbox = inbox
        self.positions = positions
        self.clock: Clock = clock or SystemClock()
        self.overlap = overlap
        self.slice_length = slice_length
        self.initial_lookback = overlap if initial_lookback is None else initial_lookback
        self.wanted = wanted
        self.page_size = page_size
        self.name = name
        self.passes = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    async def run_once(self) -> CatchUpResult:
        """Read from the saved position (minus the overlap) up to now; see the module doc."""
        async with self._lock:
            return await self._pass()

    async def _pass(self) -> CatchUpResult:
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        saved = await self.positions.aget(self.name)
        position = _parse(saved) if saved else now - self.initial_lookback
        start = max(position - self.overlap, now - RETENTION + RETENTION_MARGIN)
        read = stored = 0
        while True:
            closed = start + self.slice_length < now - self.overlap
            end = start + self.slice_length if closed else None
            events = await self._read(start, end)
            read += len(events)
            kept = [e for e in reversed(events) if self.wanted is None or self.wanted(e)]
            if kept:
                stored += await self.inbox.add_many(kept, source=SOURCE)
            if end is None:
                stamps = [e["date_updated"] for e in events if e.get("date_updated")]
                position = max([position, *(_parse(t) for t in stamps)])
            else:
                position = max(position, end)
            await self.positions.aset(self.name, _iso(position))
            if end is None:
                break
            start = end
        self.passes += 1
        if stored:
            log.info("catch-up stored %d missed event(s) of %d read", stored, read)
        return CatchUpResult(read=read, stored=stored, position=_iso(position))

    async def _read(self, start: datetime, end: datetime | None) -> list[dict[str, Any]]:
        """Every event updated in ``[start, end)`` (open-ended without ``end``), newest first."""
        params: dict[str, Any] = {"date_updated__gte": _iso(start), "_limit": self.page_size}
        if end is not None:
            params["date_updated__lt"] = _iso(end)
        events: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.client.get("/event/", params={**params, "_cursor": cursor})
            events += [e for e in page.get("data") or () if isinstance(e, dict) and e.get("id")]
            cursor = page.get("cursor_next")
            if not cursor:
                return events

    def trigger(self) -> None:
        """Ask ``run_forever`` for a pass now (e.g. after a paused subscription resumed)."""
        self._wake.set()

    async def run_forever(self, every: float = 60.0) -> None:
        """Pass on start, then every ``every`` seconds or when triggered; errors are logged
        and the next pass tries again (the position has not moved past what failed)."""
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except CloseguardError as exc:
                log.warning("Event Log catch-up failed, will retry: %s", exc)
            except Exception as exc:  # the store, a bad page: the loop must outlive it
                log.error("Event Log catch-up failed, will retry: %s", type(exc).__name__)
            sleeper = asyncio.ensure_future(self.clock.sleep(every))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, woken):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
