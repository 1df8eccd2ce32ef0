"""The in-memory state of one simulated Close organization.

Objects are plain JSON-ready dicts kept in insertion-ordered collections keyed by id, so
the state saves and loads as JSON and hashes canonically. Ids come from ``IdFactory``:
a counter hashed with the world's seed, so the same seed and the same requests always give
the same ids (evals can compare runs), while looking like Close's ``lead_`` + 43 base62.

Collections are read through ``state[name]`` as read-only mappings and changed only through
``add``, ``remove`` and ``reparent``, which keep the lead -> children indexes current, so a
write never scans the organization. Code that edits objects behind those methods' back
calls ``touch()``, which rebuilds the indexes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, get_args

Obj = dict[str, Any]

Collection = Literal[
    "organizations",
    "users",
    "lead_statuses",
    "pipelines",
    "opportunity_statuses",
    "custom_fields.lead",
    "custom_fields.contact",
    "custom_fields.opportunity",
    "custom_fields.activity",
    "leads",
    "contacts",
    "opportunities",
    "activities",
    "tasks",
    "webhooks",
]
ChildCollection = Literal["contacts", "opportunities", "activities", "tasks"]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

COLLECTIONS: tuple[Collection, ...] = get_args(Collection)
# Collections whose objects belong to a lead (``lead_id``), indexed by lead.
CHILD_COLLECTIONS: tuple[ChildCollection, ...] = get_args(ChildCollection)
CUSTOM_FIELD_COLLECTIONS: dict[str, Collection] = {
    "lead": "custom_fields.lead",
    "contact": "custom_fields.contact",
    "opportunity": "custom_fields.opportunity",
    "activity": "custom_fields.activity",
}

LeadIndex = dict[str, dict[str, Obj]]

# Length of the random part of ids, by prefix (Close: 43 for objects, 22 for events etc.).
_SHORT_IDS = frozenset({"ev", "whsub", "req", "api"})


def from_epoch(seconds: float) -> datetime:
    """An aware UTC datetime from the clock's epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def iso(moment: datetime) -> str:
    """Close's timestamp format: ``2026-11-26T09:30:00.123000+00:00``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 date or datetime; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def base62(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        out.append(BASE62[digit])
    return "".join(out)


@dataclass
class IdFactory:
    """Deterministic Close-looking ids: ``prefix_`` + base62 of sha256(seed, counter)."""

    seed: int
    counter: int = 0

    def new(self, prefix: str) -> str:
        self.counter += 1
        digest = hashlib.sha256(f"{self.seed}:{self.counter}:{prefix}".encode()).digest()
        return f"{prefix}_{base62(digest, 22 if prefix in _SHORT_IDS else 43)}"

    def hex_secret(self, nbytes: int = 32) -> str:
        """A hex secret (webhook signature keys), deterministic like the ids."""
        self.counter += 1
        digest = hashlib.sha256(f"{self.seed}:{self.counter}:secret".encode()).digest()
        while len(digest) < nbytes:
            digest += hashlib.sha256(digest).digest()
        return digest[:nbytes].hex()


@dataclass
class ApiKey:
    """A credential the simulator accepts (Basic username or Bearer token)."""

    id: str
    user_id: str


@dataclass
class OrgState:
    """Everything one simulated organization holds, except the Event Log."""

    seed: int
    organization_id: str
    ids: IdFactory
    collections: dict[Collection, dict[str, Obj]] = field(
        default_factory=lambda: {name: {} for name in COLLECTIONS}
    )
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    # Bumped after every write request (``wrote``) and by ``touch``.
    version: int = field(default=0, compare=False)
    # Per child collection: lead id -> {object id: object}, in collection order.
    _by_lead: dict[ChildCollection, LeadIndex] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Child id -> insertion rank, so a moved object takes its collection place in a bucket.
    _rank: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _next_rank: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rebuild()

    def touch(self) -> None:
        """Mark the state changed outside a request: rebuild the lead indexes."""
        self.version += 1
        self._rebuild()

    def wrote(self) -> None:
        """A write request finished: bump the version (the indexes are already current)."""
        self.version += 1

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.collections.items() if v)
        return f"OrgState(organization_id={self.organization_id!r}, {sizes})"

    def __getitem__(self, collection: Collection) -> Mapping[str, Obj]:
        return MappingProxyType(self.collections[collection])

    @property
    def organization(self) -> Obj:
        return self.collections["organizations"][self.organization_id]

    def iter_objects(self) -> Iterator[tuple[Collection, Obj]]:
        for name, objs in self.collections.items():
            for obj in objs.values():
                yield name, obj

    def find(self, collection: Collection, pred: Callable[[Obj], bool]) -> list[Obj]:
        return [obj for obj in self.collections[collection].values() if pred(obj)]

    # -- mutations: the only way objects enter, leave or change lead -------------------

    def add(self, collection: Collection, obj: Obj) -> Obj:
        """Insert (or replace) ``obj`` under its ``id``, indexed under its lead."""
        objs = self.collections[collection]
        old = objs.get(obj["id"])
        if old is not None:
            self._unindex(collection, old)
        elif collection in CHILD_COLLECTIONS:
            self._rank[obj["id"]] = self._next_rank
            self._next_rank += 1
        objs[obj["id"]] = obj
        self._index(collection, obj)
        return obj

    def remove(self, collection: Collection, obj_id: str) -> Obj:
        """Delete and return the object; ``KeyError`` if absent."""
        obj = self.collections[collection].pop(obj_id)
        self._unindex(collection, obj)
        self._rank.pop(obj_id, None)
        return obj

    def reparent(self, collection: ChildCollection, obj: Obj, lead_id: str) -> None:
        """Move a child object to another lead (a merge)."""
        self._unindex(collection, obj)
        obj["lead_id"] = lead_id
        self._index(collection, obj)

    def children(self, collection: ChildCollection, lead_id: str) -> list[Obj]:
        """The lead's objects in ``collection``, in collection order."""
        bucket = self._by_lead[collection].get(lead_id)
        return list(bucket.values()) if bucket else []

    def lead_index(self, collection: ChildCollection) -> dict[str, list[str]]:
        """The maintained index as lead id -> object ids (to compare with a rebuild)."""
        return {lead: list(bucket) for lead, bucket in self._by_lead[collection].items()}

    def _index(self, collection: Collection, obj: Obj) -> None:
        if collection not in CHILD_COLLECTIONS:
            return
        index = self._by_lead[collection]
        bucket = index.setdefault(str(obj.get("lead_id")), {})
        last = next(reversed(bucket), None)
        bucket[obj["id"]] = obj
        if last is not None and self._rank[last] > self._rank[obj["id"]]:
            ordered = sorted(bucket.values(), key=lambda o: self._rank[o["id"]])
            bucket.clear()
            bucket.update((o["id"], o) for o in ordered)

    def _unindex(self, collection: Collection, obj: Obj) -> None:
        if collection not in CHILD_COLLECTIONS:
            return
        index = self._by_lead[collection]
        key = str(obj.get("lead_id"))
        bucket = index.get(key)
        if bucket is not None:
            bucket.pop(obj["id"], None)
            if not bucket:
                del index[key]

    def _rebuild(self) -> None:
        ids = [oid for name in CHILD_COLLECTIONS for oid in self.collections[name]]
        self._rank = {oid: rank for rank, oid in enumerate(ids)}
        self._next_rank = len(ids)
        self._by_lead = {name: build_lead_index(self, name) for name in CHILD_COLLECTIONS}

    # -- JSON -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "organization_id": self.organization_id,
            "id_counter": self.ids.counter,
            "api_keys": {k: {"id": v.id, "user_id": v.user_id} for k, v in self.api_keys.items()},
            "collections": self.collections,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> OrgState:
        """Rebuild a state saved by ``to_json``; ``KeyError``/``TypeError`` if malformed."""
        seed = int(raw["seed"])
        cols = raw["collections"]
        if not isinstance(cols, dict):
            raise TypeError("collections must be an object")
        state = cls(
            seed=seed,
            organization_id=str(raw["organization_id"]),
            ids=IdFactory(seed, int(raw.get("id_counter", 0))),
        )
        for name in COLLECTIONS:
            objs = cols.get(name, {})
            if not isinstance(objs, dict):
                raise TypeError(f"collection {name} must be an object")
            state.collections[name] = {str(k): dict(v) for k, v in objs.items()}
        state.touch()
        state.api_keys = {
            str(k): ApiKey(id=str(v["id"]), user_id=str(v["user_id"]))
            for k, v in raw.get("api_keys", {}).items()
        }
        if state.organization_id not in state.collections["organizations"]:
            raise KeyError("organization_id names no organization in the world")
        return state


def build_lead_index(state: OrgState, collection: ChildCollection) -> LeadIndex:
    """``collection`` grouped by lead id from scratch, in collection order."""
    index: LeadIndex = {}
    for oid, obj in state.collections[collection].items():
        index.setdefault(str(obj.get("lead_id")), {})[oid] = obj
    return index
