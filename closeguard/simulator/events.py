"""The Event Log: every write appends Close-shaped events; ``GET /event/`` reads them back.

Events are numbered by a sequence that only grows. Cursors are opaque tokens that encode a
sequence number and a direction, so paging stays stable while new events arrive: the next
page is always "older than the last event I saw", the previous one "newer than the first".
Events older than 30 days (by the simulator's clock) are dropped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from closeguard.simulator.state import Obj, iso, parse_iso

RETENTION = timedelta(days=30)
DEFAULT_LIMIT = 50
MAX_LIMIT = 50

EventListener = Callable[[Obj], None]


class CursorError(ValueError):
    """A ``_cursor`` this log did not issue."""


def encode_cursor(direction: str, seq: int) -> str:
    raw = json.dumps({"d": direction, "s": seq}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        direction, seq = raw["d"], raw["s"]
    except (ValueError, TypeError, KeyError) as exc:
        raise CursorError("invalid cursor") from exc
    if direction not in ("n", "p") or not isinstance(seq, int):
        raise CursorError("invalid cursor")
    return direction, seq


_DATE_FILTERS: dict[str, Callable[[datetime, datetime], bool]] = {
    "date_updated__gt": lambda v, b: v > b,
    "date_updated__gte": lambda v, b: v >= b,
    "date_updated__lt": lambda v, b: v < b,
    "date_updated__lte": lambda v, b: v <= b,
}
EQUALITY_FILTERS = ("object_type", "object_id", "action", "lead_id", "user_id", "request_id")


@dataclass
class EventLog:
    """Events oldest first, each with its sequence number."""

    entries: list[tuple[int, Obj]] = field(default_factory=list)
    next_seq: int = 1
    _by_id: dict[str, Obj] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, event: Obj) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.entries.append((seq, event))
        self._by_id[event["id"]] = event
        return seq

    def events(self) -> list[Obj]:
        return [event for _, event in self.entries]

    def get(self, event_id: str) -> Obj | None:
        return self._by_id.get(event_id)

    def prune(self, now: datetime) -> None:
        """Drop events older than the 30-day retention."""
        horizon = iso(now - RETENTION)
        keep = 0
        while keep < len(self.entries) and self.entries[keep][1]["date_created"] < horizon:
            keep += 1
        for _, event in self.entries[:keep]:
            self._by_id.pop(event["id"], None)
        del self.entries[:keep]

    def page(
        self, filters: Mapping[str, str], cursor: str | None, limit: int
    ) -> tuple[list[Obj], str | None, str | None]:
        """One page newest first: (events, cursor_next, cursor_previous).

        ``filters`` holds the date and equality filters; raises ``CursorError`` or
        ``ValueError`` (bad date) for input the caller reports as 400.
        """
        matches = self._matcher(filters)
        direction, bound = decode_cursor(cursor) if cursor else ("n", self.next_seq)
        if direction == "n":
            picked: list[tuple[int, Obj]] = []
            more = False
            for seq, event in reversed(self.entries):
                if seq >= bound or not matches(event):
                    continue
                if len(picked) == limit:
                    more = True
                    break
                picked.append((seq, event))
        else:
            newer = [(s, e) for s, e in self.entries if s > bound and matches(e)]
            picked = list(reversed(newer[:limit]))
            more = bool(picked) and any(
                s < picked[-1][0] and matches(e) for s, e in reversed(self.entries)
            )
        data = [event for _, event in picked]
        cursor_next = encode_cursor("n", picked[-1][0]) if picked and more else None
        if picked:
            cursor_previous = encode_cursor("p", picked[0][0])
        else:
            cursor_previous = encode_cursor("p", bound if direction == "p" else self.next_seq - 1)
        return data, cursor_next, cursor_previous

    @staticmethod
    def _matcher(filters: Mapping[str, str]) -> Callable[[Obj], bool]:
        dates = [
            (_DATE_FILTERS[key], parse_iso(value))
            for key, value in filters.items()
            if key in _DATE_FILTERS and value is not None
        ]
        equals = [(k, filters[k]) for k in EQUALITY_FILTERS if filters.get(k) is not None]

        def matches(event: Obj) -> bool:
            if any(event.get(k) != v for k, v in equals):
                return False
            if dates:
                updated = parse_iso(event["date_updated"])
                return all(test(updated, bound) for test, bound in dates)
            return True

        return matches

    # -- JSON -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"next_seq": self.next_seq, "entries": [[s, e] for s, e in self.entries]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> EventLog:
        log = cls()
        if not raw:
            return log
        entries: Iterable[Any] = raw.get("entries", [])
        for seq, event in entries:
            log.entries.append((int(seq), dict(event)))
            log._by_id[event["id"]] = event
        log.next_seq = int(raw.get("next_seq", (log.entries[-1][0] + 1) if log.entries else 1))
        return log
