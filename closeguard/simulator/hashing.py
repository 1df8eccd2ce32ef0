"""Canonical state hash and state diff, for eval grading and "nothing else changed" checks.

What counts as state: every object collection (organization, users, statuses, pipelines,
custom field definitions, leads, contacts, opportunities, activities, tasks, webhook
subscriptions). Left out as volatile or secret: the Event Log (it records history, not
state), the id counter, API keys, and request counters. Timestamps are part of the state by
default; pass ``ignore_fields={"date_created", "date_updated", ...}`` to compare worlds
produced at different times.

The canonical form is JSON with sorted keys, no whitespace and ``ensure_ascii``; the hash is
its sha256 hex digest.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from closeguard.simulator.state import Obj, OrgState

__all__ = [
    "TIMESTAMP_FIELDS",
    "ObjectChange",
    "Snapshot",
    "StateDiff",
    "canonical_json",
    "diff",
    "snapshot",
    "state_hash",
]

TIMESTAMP_FIELDS = frozenset({"date_created", "date_updated", "date_sent"})

Snapshot = dict[str, dict[str, Obj]]

_MISSING = "<missing>"


def snapshot(state: OrgState, ignore_fields: Iterable[str] = ()) -> Snapshot:
    """A deep copy of every collection (optionally without some fields)."""
    skip = set(ignore_fields)
    return {
        name: {
            oid: {k: copy.deepcopy(v) for k, v in obj.items() if k not in skip}
            for oid, obj in objs.items()
        }
        for name, objs in state.collections.items()
    }


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def state_hash(state: OrgState | Snapshot, ignore_fields: Iterable[str] = ()) -> str:
    """sha256 hex of the canonical JSON of the state's collections."""
    snap = snapshot(state, ignore_fields) if isinstance(state, OrgState) else state
    if not isinstance(state, OrgState) and ignore_fields:
        skip = set(ignore_fields)
        snap = {
            n: {i: {k: v for k, v in o.items() if k not in skip} for i, o in objs.items()}
            for n, objs in snap.items()
        }
    return hashlib.sha256(canonical_json(snap).encode()).hexdigest()


@dataclass(frozen=True)
class ObjectChange:
    """One object that differs: where it lives, its id, and for changes the fields."""

    collection: str
    id: str
    fields: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"collection": self.collection, "id": self.id}
        if self.fields:
            out["fields"] = {k: {"old": old, "new": new} for k, (old, new) in self.fields.items()}
        return out


@dataclass(frozen=True)
class StateDiff:
    """Objects added, removed and changed between two snapshots."""

    added: tuple[ObjectChange, ...] = ()
    removed: tuple[ObjectChange, ...] = ()
    changed: tuple[ObjectChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def __bool__(self) -> bool:
        return not self.empty

    def ids(self) -> set[str]:
        return {c.id for c in (*self.added, *self.removed, *self.changed)}

    def only(self, collections: Iterable[str]) -> StateDiff:
        keep = set(collections)
        return StateDiff(
            tuple(c for c in self.added if c.collection in keep),
            tuple(c for c in self.removed if c.collection in keep),
            tuple(c for c in self.changed if c.collection in keep),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "added": [c.to_json() for c in self.added],
            "removed": [c.to_json() for c in self.removed],
            "changed": [c.to_json() for c in self.changed],
        }

    def summary(self) -> str:
        return f"+{len(self.added)} -{len(self.removed)} ~{len(self.changed)}"


def diff(before: Snapshot, after: Snapshot, ignore_fields: Iterable[str] = ()) -> StateDiff:
    """What changed from ``before`` to ``after``, object by object and field by field."""
    skip = set(ignore_fields)
    added: list[ObjectChange] = []
    removed: list[ObjectChange] = []
    changed: list[ObjectChange] = []
    for name in sorted(set(before) | set(after)):
        old_objs, new_objs = before.get(name, {}), after.get(name, {})
        for oid in sorted(set(new_objs) - set(old_objs)):
            added.append(ObjectChange(name, oid))
        for oid in sorted(set(old_objs) - set(new_objs)):
            removed.append(ObjectChange(name, oid))
        for oid in sorted(set(old_objs) & set(new_objs)):
            old, new = old_objs[oid], new_objs[oid]
            fields = {
                key: (old.get(key, _MISSING), new.get(key, _MISSING))
                for key in sorted(set(old) | set(new))
                if key not in skip and old.get(key, _MISSING) != new.get(key, _MISSING)
            }
            if fields:
                changed.append(ObjectChange(name, oid, fields))
    return StateDiff(tuple(added), tuple(removed), tuple(changed))
