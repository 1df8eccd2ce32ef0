"""The world a suite's trials start from, and the ``{{...}}`` templates that refer to it.

``await build_world(loaded)`` generates (or loads) the organization once per suite, adds
the fixtures through the simulator's own API (so they look exactly like objects Close
made) and remembers each fixture's handle. ``world.simulator(seed=..., faults=...)``
then hands out a fresh simulator per trial, on a copy of that state and its own fake
clock: a 429 storm or added latency costs no real time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from closeguard.evals.format import Faults, LeadFixture, World
from closeguard.evals.loader import LoadedSuite
from closeguard.simulator import EventLog, FakeClock, FaultConfig, OrgState, Simulator
from closeguard.simulator.world import DEFAULT_ANCHOR, load_world
from closeguard.tools import CloseClient
from closeguard.tools.errors import CloseguardError, ConfigError

__all__ = ["ANCHOR", "BuiltWorld", "build_world", "fault_config"]

ANCHOR = DEFAULT_ANCHOR
"""Every suite's "now": worlds, due dates and ticks line up with it on every day."""

SETTLED = 2 * 3600.0
"""Trials start this long after the world was built, so the fixtures' own events are
history (Event Log catch-up looks back minutes, not hours), on the same day."""
_TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_TODAY = re.compile(r"^today\s*([+-])\s*(\d+)$")


@dataclass
class BuiltWorld:
    """A built world: its state as JSON, its Event Log, the handles and the clock time."""

    state: dict[str, Any]
    events: Any
    handles: dict[str, tuple[str, str]] = field(default_factory=dict)
    """handle -> (collection, id)."""
    now: float = ANCHOR.timestamp()

    @property
    def start(self) -> float:
        """When each trial's clock starts."""
        return self.now + SETTLED

    def simulator(self, *, seed: int, faults: Faults | None = None) -> Simulator:
        """A fresh simulator on a copy of the world, on its own ``FakeClock``."""
        return Simulator(
            seed=seed,
            world=OrgState.from_json(orjson.loads(orjson.dumps(self.state))),
            events=EventLog.from_json(orjson.loads(orjson.dumps(self.events))),
            clock=FakeClock(start=self.start),
            faults=fault_config(faults),
        )

    # -- templates ---------------------------------------------------------------------

    def fill(self, value: Any) -> Any:
        """``value`` with every ``{{...}}`` replaced (recursively through dicts and lists)."""
        if isinstance(value, str):
            whole = _TEMPLATE.fullmatch(value)
            if whole:
                return self.resolve(whole.group(1))
            return _TEMPLATE.sub(lambda m: str(self.resolve(m.group(1))), value)
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def resolve(self, ref: str) -> Any:
        today = datetime.fromtimestamp(self.now, UTC).date()
        if ref == "today":
            return today.isoformat()
        if ref == "now":
            return datetime.fromtimestamp(self.now, UTC).isoformat()
        shifted = _TODAY.match(ref)
        if shifted:
            days = int(shifted.group(2)) * (1 if shifted.group(1) == "+" else -1)
            return (today + timedelta(days=days)).isoformat()
        col = self.state["collections"]
        if ref == "me" or ref.startswith("me."):
            me = next(iter(col["users"]))
            return me if ref == "me" else self._field("users", me, ref[3:], ref)
        kind, sep, label = ref.partition(":")
        if sep:
            return self._labelled(kind, label)
        handle, _, path = ref.partition(".")
        if handle not in self.handles:
            raise ConfigError(f"unknown handle {{{{{ref}}}}} (fixtures: {', '.join(self.handles)})")
        collection, oid = self.handles[handle]
        return self._field(collection, oid, path, ref) if path else oid

    def _field(self, collection: str, oid: str, path: str, ref: str) -> Any:
        value: Any = self.state["collections"][collection][oid]
        for key in path.split("."):
            try:
                value = value[int(key)] if isinstance(value, list) else value[key]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ConfigError(f"{{{{{ref}}}}}: no {path} there") from None
        return value

    def _labelled(self, kind: str, label: str) -> str:
        col = self.state["collections"]
        table = {
            "lead_status": ("lead_statuses", "label"),
            "stage": ("opportunity_statuses", "label"),
            "user": ("users", "first_name"),
        }
        if kind not in table:
            raise ConfigError(f"unknown template {{{{{kind}:{label}}}}}")
        collection, key = table[kind]
        for oid, obj in col[collection].items():
            if obj.get(key) == label:
                return str(oid)
        raise ConfigError(f"{{{{{kind}:{label}}}}}: no such {kind} in this world")


def fault_config(faults: Faults | None) -> FaultConfig | None:
    if faults is None:
        return None
    return FaultConfig(groups=dict(faults.http))


async def build_world(loaded: LoadedSuite) -> BuiltWorld:
    """The suite's starting world, fixtures included (deterministic: same suite, same ids)."""
    spec = loaded.suite.world
    sim = _base(spec, loaded)
    built = BuiltWorld(state={}, events=None)
    async with sim.client() as client:
        fields: dict[str, str] = {}
        for i, lead in enumerate(spec.fixtures):
            try:
                await _add_lead(client, sim, built, lead, fields)
            except CloseguardError as exc:
                raise ConfigError(
                    f"fixture {lead.handle}: {exc}",
                    file=str(loaded.file),
                    line=loaded.fixture_lines.get(i),
                ) from None
    built.state = orjson.loads(orjson.dumps(sim.state.to_json()))
    built.events = orjson.loads(orjson.dumps(sim.log.to_json()))
    # Fixture text may name other fixtures ({{handle}}): filled once every handle exists.
    built.state = built.fill(built.state)
    built.events = built.fill(built.events)
    built.now = sim.clock.now()
    return built


def _base(spec: World, loaded: LoadedSuite) -> Simulator:
    clock = FakeClock(start=ANCHOR.timestamp())
    if spec.file:
        state, log = load_world(loaded.folder / spec.file)
        return Simulator(seed=spec.seed, world=state, events=log, clock=clock, rate_limits=None)
    return Simulator(seed=spec.seed, leads=spec.leads, anchor=ANCHOR, clock=clock, rate_limits=None)


def _status_id(
    sim: Simulator, collection: Literal["lead_statuses", "opportunity_statuses"], label: str
) -> str:
    for oid, obj in sim.state[collection].items():
        if obj.get("label") == label:
            return str(oid)
    raise ConfigError(f"fixture status {label!r}: no such status in {collection}")


async def _add_lead(
    client: CloseClient,
    sim: Simulator,
    built: BuiltWorld,
    lead: LeadFixture,
    fields: dict[str, str],
) -> None:
    body: dict[str, Any] = {"name": lead.name, "description": lead.description}
    if lead.url:
        body["url"] = lead.url
    if lead.status:
        body["status_id"] = _status_id(sim, "lead_statuses", lead.status)
    for name, value in lead.custom.items():
        if name not in fields:
            made = await client.request(
                "POST", "/custom_field/lead/", json={"name": name, "type": "text"}
            )
            fields[name] = made["id"]
        body[f"custom.{fields[name]}"] = value
    body["contacts"] = [
        {
            "name": c.name,
            **({"title": c.title} if c.title else {}),
            "emails": [{"email": c.email, "type": "office"}] if c.email else [],
            "phones": [{"phone": c.phone, "type": "office"}] if c.phone else [],
        }
        for c in lead.contacts
    ]
    made = await client.request("POST", "/lead/", json=body)
    lead_id = made["id"]
    built.handles[lead.handle] = ("leads", lead_id)
    for contact, saved in zip(lead.contacts, made.get("contacts") or [], strict=True):
        if contact.handle:
            built.handles[contact.handle] = ("contacts", saved["id"])
    await _add_children(client, sim, built, lead, lead_id)


async def _add_children(
    client: CloseClient, sim: Simulator, built: BuiltWorld, lead: LeadFixture, lead_id: str
) -> None:
    made: list[tuple[str | None, str, str, dict[str, Any]]] = []
    for opp in lead.opportunities:
        body = {
            "lead_id": lead_id,
            "value": opp.value,
            "value_period": opp.value_period,
            "confidence": opp.confidence,
            "note": opp.note,
            "status_id": _status_id(sim, "opportunity_statuses", opp.status),
        }
        made.append((opp.handle, "opportunities", "/opportunity/", body))
    for note in lead.notes:
        made.append(
            (note.handle, "activities", "/activity/note/", {"lead_id": lead_id, "note": note.note})
        )
    user_email = next(iter(sim.state["users"].values()))["email"]
    for email in lead.emails:
        incoming = email.direction == "incoming"
        body = {
            "lead_id": lead_id,
            "subject": email.subject,
            "body_text": email.body_text,
            "status": "inbox" if incoming else "sent",
            "sender": email.sender or ("someone@outside.example" if incoming else user_email),
            "to": email.to or ([user_email] if incoming else []),
        }
        made.append((email.handle, "activities", "/activity/email/", body))
    for call in lead.calls:
        body = {
            "lead_id": lead_id,
            "note": call.note,
            "direction": call.direction,
            "duration": call.duration,
        }
        made.append((call.handle, "activities", "/activity/call/", body))
    for task in lead.tasks:
        body = {
            "lead_id": lead_id,
            "text": task.text,
            "date": built.fill(task.date),
            "is_complete": task.is_complete,
        }
        made.append((task.handle, "tasks", "/task/", body))
    for handle, collection, path, body in made:
        result = await client.request("POST", path, json=body)
        if handle:
            built.handles[handle] = (collection, result["id"])
