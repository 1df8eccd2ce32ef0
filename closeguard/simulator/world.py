"""Seeded worlds: a believable sales organization, and JSON load/save.

``generate_world(seed, leads, anchor)`` builds the same organization for the same
arguments, ids included: content comes from ``random.Random(seed)`` and ids from the
state's ``IdFactory`` (seeded too). Dates spread over the ~120 days before ``anchor``
(tasks due around it), so pass a fixed anchor, or a ``FakeClock``'s time, when worlds must
match across days.

A world file is ``{"format": "closeguard-sim-world", "version": 1, "state": ..., "events":
...}``; ``load_world`` raises ``WorldFileError`` with a one-line reason for anything else.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from closeguard.simulator.events import EventLog
from closeguard.simulator.state import ApiKey, IdFactory, Obj, OrgState, base62, iso
from closeguard.tools.errors import ConfigError

__all__ = ["WORLD_FORMAT", "WorldFileError", "generate_world", "load_world", "save_world"]

WORLD_FORMAT = "closeguard-sim-world"
WORLD_VERSION = 1
DEFAULT_ANCHOR = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

LEAD_STATUSES = ("Potential", "Bad Fit", "Qualified", "Customer")
PIPELINE_STATUSES = (
    ("Discovery", "active"),
    ("Demo Scheduled", "active"),
    ("Proposal Sent", "active"),
    ("Won", "won"),
    ("Lost", "lost"),
)
USERS = (
    ("Dana", "Whitfield"),
    ("Marcus", "Okafor"),
    ("Priya", "Raman"),
    ("Tomás", "Alvarez"),
)
_PREFIXES = (
    "North",
    "Blue",
    "Bright",
    "Summit",
    "Iron",
    "Silver",
    "Cedar",
    "Harbor",
    "Nova",
    "Pine",
    "Atlas",
    "Red",
    "Clear",
    "Golden",
    "Swift",
    "Maple",
    "Union",
    "Vertex",
    "Echo",
    "Granite",
)
_SUFFIXES = (
    "Labs",
    "Logistics",
    "Analytics",
    "Health",
    "Foods",
    "Robotics",
    "Media",
    "Capital",
    "Systems",
    "Studios",
    "Energy",
    "Software",
    "Supply",
    "Networks",
    "Partners",
    "Dental",
)
_FORMS = ("Inc.", "LLC", "Co.", "Group", "Ltd", "")
_FIRST = (
    "Alex",
    "Jordan",
    "Sam",
    "Taylor",
    "Morgan",
    "Casey",
    "Riley",
    "Jamie",
    "Avery",
    "Quinn",
    "Harper",
    "Rowan",
    "Elena",
    "Noah",
    "Mia",
    "Liam",
    "Sofia",
    "Yuki",
    "Omar",
    "Ines",
)
_LAST = (
    "Smith",
    "Garcia",
    "Chen",
    "Novak",
    "Patel",
    "Kim",
    "Müller",
    "Rossi",
    "Dubois",
    "Haddad",
    "Silva",
    "Johansson",
    "Nguyen",
    "Brown",
    "Kowalski",
    "Tanaka",
    "Okoye",
    "Larsen",
)
_TITLES = ("CEO", "CTO", "VP Sales", "Head of Ops", "Founder", "Procurement Lead", "COO", "")
_CITIES = (
    ("Austin", "TX", "US"),
    ("Denver", "CO", "US"),
    ("Boston", "MA", "US"),
    ("Toronto", "ON", "CA"),
    ("London", "", "GB"),
    ("Berlin", "", "DE"),
)
_NOTES = (
    "Intro call went well; they want pricing for {n} seats.",
    "Budget approved for Q{q}. Decision maker is the {t}.",
    "Asked for a case study in their industry.",
    "Evaluating two competitors; our reporting is the differentiator.",
    "Follow up after their board meeting.",
    "Champion left the company; need a new contact.",
)
_SUBJECTS = (
    "Quick question about your sales process",
    "Proposal for {c}",
    "Following up on our call",
    "Pricing details",
    "Re: demo next week",
)
_TASKS = (
    "Follow up with {p}",
    "Send proposal to {c}",
    "Call {p} about renewal",
    "Prepare demo for {c}",
    "Check in after trial",
)


class WorldFileError(ConfigError):
    """A world file that is missing, not JSON, or not a closeguard world (a ``ConfigError``)."""


def _stamp(obj: Obj, org_id: str, user_id: str, created: datetime, updated: datetime) -> Obj:
    obj["organization_id"] = org_id
    obj["date_created"] = iso(created)
    obj["date_updated"] = iso(max(created, updated))
    obj["created_by"] = user_id
    obj["updated_by"] = user_id
    return obj


def generate_world(seed: int = 0, leads: int = 20, anchor: datetime | None = None) -> OrgState:
    """A deterministic sales organization with ``leads`` leads and their history."""
    if leads < 0:
        raise ValueError("leads must be >= 0")
    if anchor is None:
        anchor = DEFAULT_ANCHOR
    rng = random.Random(seed)
    ids = IdFactory(seed)
    org_id = ids.new("orga")
    state = OrgState(seed=seed, organization_id=org_id, ids=ids)
    founded = anchor - timedelta(days=400)
    col = state.collections

    user_ids: list[str] = []
    for first, last in USERS:
        uid = ids.new("user")
        user_ids.append(uid)
        email = f"{first.lower().replace('á', 'a')}.{last.lower()}@example-sales.com"
        col["users"][uid] = {
            "id": uid,
            "first_name": first,
            "last_name": last,
            "display_name": f"{first} {last}",
            "email": email,
            "image": None,
            "date_created": iso(founded),
            "date_updated": iso(founded),
        }
    admin = user_ids[0]
    col["organizations"][org_id] = _stamp(
        {"id": org_id, "name": "Northwind Sales Co", "currency": "USD"},
        org_id,
        admin,
        founded,
        founded,
    )
    secret = bytes.fromhex(ids.hex_secret(32))
    key = f"api_{base62(secret[:16], 22)}.{base62(secret[16:], 22)}"
    state.api_keys[key] = ApiKey(id=ids.new("api"), user_id=admin)

    for label in LEAD_STATUSES:
        sid = ids.new("stat")
        col["lead_statuses"][sid] = {"id": sid, "label": label, "organization_id": org_id}
    pipe = ids.new("pipe")
    col["pipelines"][pipe] = {"id": pipe, "name": "Sales", "organization_id": org_id}
    for label, kind in PIPELINE_STATUSES:
        sid = ids.new("stat")
        col["opportunity_statuses"][sid] = {
            "id": sid,
            "label": label,
            "type": kind,
            "pipeline_id": pipe,
            "organization_id": org_id,
        }
    lead_statuses = list(col["lead_statuses"].values())
    opp_statuses = list(col["opportunity_statuses"].values())

    used_names: set[str] = set()
    for _ in range(leads):
        _generate_lead(state, rng, anchor, user_ids, lead_statuses, opp_statuses, used_names)
    state.touch()  # generation fills the collections in bulk: index them once
    return state


def _company(rng: random.Random, used: set[str]) -> str:
    for _ in range(50):
        name = f"{rng.choice(_PREFIXES)} {rng.choice(_SUFFIXES)} {rng.choice(_FORMS)}".strip()
        if name not in used:
            used.add(name)
            return name
    name = f"{rng.choice(_PREFIXES)} {rng.choice(_SUFFIXES)} {len(used)}"
    used.add(name)
    return name


def _generate_lead(
    state: OrgState,
    rng: random.Random,
    anchor: datetime,
    user_ids: list[str],
    lead_statuses: list[Obj],
    opp_statuses: list[Obj],
    used_names: set[str],
) -> None:
    ids, col, org_id = state.ids, state.collections, state.organization_id
    owner = rng.choice(user_ids)
    created = anchor - timedelta(days=rng.uniform(5, 120), seconds=rng.randint(0, 86399))
    last_touch = created
    name = _company(rng, used_names)
    domain = (
        "".join(
            ch for ch in name.lower().split(" ")[0] + name.lower().split(" ")[1] if ch.isalnum()
        )
        + ".example"
    )
    status = rng.choices(lead_statuses, weights=(5, 1, 3, 2))[0]
    city, region, country = rng.choice(_CITIES)
    lead_id = ids.new("lead")
    lead: Obj = {
        "id": lead_id,
        "name": name,
        "display_name": name,
        "status_id": status["id"],
        "status_label": status["label"],
        "description": rng.choice(("", "Inbound from website", "Referral", "Conference lead")),
        "url": f"https://www.{domain}",
        "addresses": [
            {
                "label": "business",
                "address_1": f"{rng.randint(1, 999)} Main St",
                "city": city,
                "state": region,
                "zipcode": f"{rng.randint(10000, 99999)}",
                "country": country,
            }
        ],
    }
    contacts: list[Obj] = []
    for _ in range(rng.randint(1, 3)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        cid = ids.new("cont")
        local = f"{first}.{last}".lower().replace("ü", "u")
        contact = _stamp(
            {
                "id": cid,
                "lead_id": lead_id,
                "name": f"{first} {last}",
                "display_name": f"{first} {last}",
                "title": rng.choice(_TITLES),
                "emails": [{"email": f"{local}@{domain}", "type": "office"}],
                "phones": [{"phone": f"+1{rng.randint(2000000000, 9899999999)}", "type": "office"}],
                "urls": [],
            },
            org_id,
            owner,
            created,
            created,
        )
        contacts.append(contact)
        col["contacts"][cid] = contact

    def later(days: float) -> datetime:
        moment = created + timedelta(days=rng.uniform(0, days), seconds=rng.randint(0, 3600))
        return min(moment, anchor - timedelta(minutes=5))

    for _ in range(rng.randint(0, 3)):
        moment = later(100)
        last_touch = max(last_touch, moment)
        aid = ids.new("acti")
        note = rng.choice(_NOTES).format(
            n=rng.randint(5, 80), q=rng.randint(1, 4), t=rng.choice(_TITLES) or "owner"
        )
        col["activities"][aid] = _stamp(
            {
                "id": aid,
                "_type": "Note",
                "lead_id": lead_id,
                "contact_id": None,
                "user_id": owner,
                "note": note,
                "note_html": f"<p>{note}</p>",
            },
            org_id,
            owner,
            moment,
            moment,
        )
    for _ in range(rng.randint(0, 3)):
        moment = later(100)
        last_touch = max(last_touch, moment)
        contact = rng.choice(contacts)
        aid = ids.new("acti")
        col["activities"][aid] = _stamp(
            {
                "id": aid,
                "_type": "Call",
                "lead_id": lead_id,
                "contact_id": contact["id"],
                "user_id": owner,
                "direction": rng.choice(("outbound", "inbound")),
                "duration": rng.choice((0, rng.randint(30, 1800))),
                "status": "completed",
                "phone": contact["phones"][0]["phone"],
                "note": "",
            },
            org_id,
            owner,
            moment,
            moment,
        )
    for _ in range(rng.randint(0, 3)):
        moment = later(100)
        last_touch = max(last_touch, moment)
        contact = rng.choice(contacts)
        aid = ids.new("acti")
        incoming = rng.random() < 0.35
        sender = contact["emails"][0]["email"] if incoming else state["users"][owner]["email"]
        recipient = state["users"][owner]["email"] if incoming else contact["emails"][0]["email"]
        subject = rng.choice(_SUBJECTS).format(c=name)
        col["activities"][aid] = _stamp(
            {
                "id": aid,
                "_type": "Email",
                "lead_id": lead_id,
                "contact_id": contact["id"],
                "user_id": owner,
                "direction": "incoming" if incoming else "outgoing",
                "status": "inbox" if incoming else "sent",
                "sender": sender,
                "to": [recipient],
                "cc": [],
                "bcc": [],
                "subject": subject,
                "body_text": f"Hi,\n\n{subject}.\n\nBest",
                "body_html": "",
                "date_sent": iso(moment),
            },
            org_id,
            owner,
            moment,
            moment,
        )
    for _ in range(rng.choices((0, 1, 2), weights=(3, 5, 2))[0]):
        status = rng.choice(opp_statuses)
        moment = later(60)
        last_touch = max(last_touch, moment)
        oid = ids.new("oppo")
        closed = iso(moment)[:10]
        col["opportunities"][oid] = _stamp(
            {
                "id": oid,
                "lead_id": lead_id,
                "lead_name": name,
                "contact_id": rng.choice(contacts)["id"],
                "user_id": owner,
                "status_id": status["id"],
                "status_label": status["label"],
                "status_display_name": status["label"],
                "status_type": status["type"],
                "pipeline_id": status["pipeline_id"],
                "value": rng.choice((500, 1200, 2500, 5000, 12000, 30000)) * 100,
                "value_period": rng.choice(("one_time", "monthly", "annual")),
                "value_currency": "USD",
                "confidence": rng.choice((10, 25, 50, 75, 90)),
                "note": "",
                "date_won": closed if status["type"] == "won" else None,
                "date_lost": closed if status["type"] == "lost" else None,
            },
            org_id,
            owner,
            moment,
            moment,
        )
    for _ in range(rng.randint(0, 2)):
        tid = ids.new("task")
        moment = later(80)
        due = anchor + timedelta(days=rng.randint(-20, 20))
        contact = rng.choice(contacts)
        text = rng.choice(_TASKS).format(p=contact["name"], c=name)
        col["tasks"][tid] = _stamp(
            {
                "id": tid,
                "_type": "lead",
                "lead_id": lead_id,
                "lead_name": name,
                "assigned_to": rng.choice((owner, owner, rng.choice(user_ids))),
                "text": text,
                "date": due.date().isoformat(),
                "is_complete": due < anchor and rng.random() < 0.6,
            },
            org_id,
            owner,
            moment,
            moment,
        )
    col["leads"][lead_id] = _stamp(lead, org_id, owner, created, last_touch)


# -- files ---------------------------------------------------------------------------------


def save_world(path: str | Path, state: OrgState, log: EventLog | None = None) -> None:
    """Write the world (and its Event Log, if given) as JSON."""
    payload: dict[str, Any] = {
        "format": WORLD_FORMAT,
        "version": WORLD_VERSION,
        "state": state.to_json(),
        "events": (log or EventLog()).to_json(),
    }
    Path(path).write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")


def load_world(path: str | Path) -> tuple[OrgState, EventLog]:
    """Read a world file; ``WorldFileError`` says what is wrong with it in one line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorldFileError(f"world file not found: {file}") from None
    except OSError as exc:
        raise WorldFileError(f"cannot read world file {file}: {exc.strerror}") from None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise WorldFileError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != WORLD_FORMAT:
        raise WorldFileError(f"{file} is not a closeguard simulator world")
    if raw.get("version") != WORLD_VERSION:
        raise WorldFileError(f"{file}: unsupported world version {raw.get('version')!r}")
    try:
        return OrgState.from_json(raw["state"]), EventLog.from_json(raw.get("events"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WorldFileError(f"{file}: malformed world ({type(exc).__name__}: {exc})") from None
