"""The Event Log: every write appends Close-shaped events; ``GET /event/`` reads them back.

Events are numbered by a sequence that only grows. Cursors are opaque tokens that encode a
sequence number and a direction, so paging stays stable while new events arrive: the next
page is always "older than the last event I saw", the previous one "newer than the first".
Events older than 30 days (by the simulator's clock) are dropped.

Close accepts only some combinations of equality filters (``SUPPORTED_FILTERS``, each
optionally with ``date_updated`` bounds); any other is refused. A cursor is bound to the
equality filters it was issued for: reusing it with others is refused, as Close requires
the same filters again (``date_updated`` bounds may change).
"""

from __future__ import annotations

import base64
import hashlib
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


class CursorMismatch(CursorError):
    """A ``_cursor`` issued for other equality filters than the request's."""


class FilterError(ValueError):
    """A combination of filters Close does not support; the message lists those it does."""


EQUALITY_FILTERS = ("object_type", "object_id", "action", "lead_id", "user_id", "request_id")

# developer.close.com, "Retrieve a list of events": "Only certain combinations of filters are
# supported. date_updated can be optionally used with any allowed filter combination." No
# filter at all (the plain poll the docs page with) is accepted as well.
SUPPORTED_FILTERS: tuple[frozenset[str], ...] = tuple(
    frozenset(combination)
    for combination in (
        (),
        ("object_type", "object_id"),
        ("object_type", "action"),
        ("object_id", "action"),
        ("lead_id", "object_type"),
        ("lead_id", "object_type", "action"),
        ("lead_id", "user_id", "object_type"),
        ("lead_id", "user_id", "object_type", "action"),
        ("lead_id", "user_id"),
        ("user_id", "object_id"),
        ("user_id", "object_id", "action"),
        ("user_id", "object_type"),
        ("user_id", "object_type", "action"),
        ("lead_id",),
        ("user_id",),
        ("request_id",),
    )
)


def _describe(combination: frozenset[str]) -> str:
    return " + ".join(k for k in EQUALITY_FILTERS if k in combination) or "no filter"


def check_filters(filters: Mapping[str, str | None]) -> None:
    """Raise ``FilterError`` unless the equality filters used form a supported combination."""
    used = frozenset(k for k in EQUALITY_FILTERS if filters.get(k) is not None)
    if used in SUPPORTED_FILTERS:
        return
    supported = "; ".join(_describe(c) for c in SUPPORTED_FILTERS)
    raise FilterError(
        f"Unsupported combination of filters: {_describe(used)}. Supported combinations, each "
        f"optionally with date_updated__gt/__gte/__lt/__lte: {supported}."
    )


def filters_binding(filters: Mapping[str, str | None]) -> str:
    """A short digest of the equality filters, which a cursor carries and must match."""
    used = sorted((k, str(filters[k])) for k in EQUALITY_FILTERS if filters.get(k) is not None)
    digest = hashlib.sha256(json.dumps(used, separators=(",", ":")).encode()).hexdigest()
    return digest[:16]


def encode_cursor(direction: str, seq: int, binding: str = "") -> str:
    raw = json.dumps({"d": direction, "s": seq, "f": binding}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, binding: str = "") -> tuple[str, int]:
    """Direction and sequence of a cursor; ``CursorMismatch`` if issued for other filters."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        direction, seq, bound_to = raw["d"], raw["s"], raw.get("f", "")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CursorError("invalid cursor") from exc
    if direction not in ("n", "p") or not isinstance(seq, int):
        raise CursorError("invalid cursor")
    if bound_to != binding:
        raise CursorMismatch("cursor issued for other filters")
    return direction, seq


_DATE_FILTERS: dict[str, Callable[[datetime, datetime], bool]] = {
    "date_updated__gt": lambda v, b: v > b,
    "date_updated__gte": lambda v, b: v >= b,
    "date_updated__lt": lambda v, b: v < b,
    "date_updated__lte": lambda v, b: v <= b,
}


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

        ``filters`` holds the date and equality filters; raises ``FilterError``,
        ``CursorError`` (``CursorMismatch``) or ``ValueError`` (bad date) for input the
        caller reports as 400.
        """
        check_filters(filters)
        binding = filters_binding(filters)
        matches = self._matcher(filters)
        direction, bound = decode_cursor(cursor, binding) if cursor else ("n", self.next_seq)
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
        cursor_next = encode_cursor("n", picked[-1][0], binding) if picked and more else None
        if picked:
            cursor_previous = encode_cursor("p", picked[0][0], binding)
        else:
            newest = bound if direction == "p" else self.next_seq - 1
            cursor_previous = encode_cursor("p", newest, binding)
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
