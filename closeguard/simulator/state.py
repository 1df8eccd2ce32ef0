"""The in-memory state of one simulated Close organization.

Objects are plain JSON-ready dicts kept in insertion-ordered collections keyed by id, so
the state saves and loads as JSON and hashes canonically. Ids come from ``IdFactory``:
a counter hashed with the world's seed, so the same seed and the same requests always give
the same ids (evals can compare runs), while looking like Close's ``lead_`` + 43 base62.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

COLLECTIONS: tuple[str, ...] = (
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
)

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
    collections: dict[str, dict[str, Obj]] = field(
        default_factory=lambda: {name: {} for name in COLLECTIONS}
    )
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    # Bumped after every write request; read-only requests reuse indexes built at a version.
    version: int = field(default=0, compare=False)
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def touch(self) -> None:
        """Mark the state changed (call after editing collections outside a request)."""
        self.version += 1
        self.derived.clear()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.collections.items() if v)
        return f"OrgState(organization_id={self.organization_id!r}, {sizes})"

    def __getitem__(self, collection: str) -> dict[str, Obj]:
        return self.collections[collection]

    @property
    def organization(self) -> Obj:
        return self.collections["organizations"][self.organization_id]

    def iter_objects(self) -> Iterator[tuple[str, Obj]]:
        for name, objs in self.collections.items():
            for obj in objs.values():
                yield name, obj

    def find(self, collection: str, pred: Callable[[Obj], bool]) -> list[Obj]:
        return [obj for obj in self.collections[collection].values() if pred(obj)]

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
        state.api_keys = {
            str(k): ApiKey(id=str(v["id"]), user_id=str(v["user_id"]))
            for k, v in raw.get("api_keys", {}).items()
        }
        if state.organization_id not in state.collections["organizations"]:
            raise KeyError("organization_id names no organization in the world")
        return state
