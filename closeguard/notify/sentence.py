"""What an approval asks, in sales words, built from the records it touches.

"Move Acme Robotics' 'Expansion' deal to Won, 240,000 USD" instead of
``opportunity.update PUT /opportunity/oppo_…/``. One builder serves the console's cards
and the notifications. Records are read through a client the caller gives (the
console's read-only guarded client, audited as ``console``), and cached for ``ttl``
seconds: leads, deals, contacts, users, statuses and the organization's currency.

A sentence never holds a redacted value (the approval's arguments are stored redacted;
a masked field is named, not shown) and never fails: a record that cannot be read is
named by its id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from closeguard.guardrails import Approval
from closeguard.guardrails.redact import REDACTED
from closeguard.tools import CloseClient, CloseguardError
from closeguard.tools.catalog import BY_NAME, relative_path

__all__ = ["Describer", "money", "possessive"]

Record = dict[str, Any]
NAME_PREFIXES = {"lead_": "/lead/{}/", "user_": "/user/{}/"}
"""Ids whose names the runs and audit pages show beside them, and where they are read."""
SENDING = {"outbox": "Send", "scheduled": "Schedule", "sending": "Send"}


def money(cents: Any, currency: str) -> str:
    """Close amounts are in cents: ``24000000`` -> ``240,000 USD``."""
    if isinstance(cents, bool) or not isinstance(cents, int | float):
        return "-"
    whole = cents / 100
    text = f"{whole:,.0f}" if float(whole).is_integer() else f"{whole:,.2f}"
    return f"{text} {currency}".strip()


def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _quoted(text: Any, limit: int = 60) -> str:
    line = " ".join(str(text).split())
    return f"'{line[: limit - 1]}…'" if len(line) > limit else f"'{line}'"


def _shown(value: Any) -> bool:
    return value not in (None, "", REDACTED)


class Describer:
    """Sales sentences for approvals, and names for ids, read through ``client()``."""

    def __init__(
        self,
        client: Callable[[], CloseClient],
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, Record | None]] = {}

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, c: CloseClient, path: str) -> Record | None:
        """The record at ``path`` (cached), or None when it cannot be read."""
        found = self._cache.get(path)
        now = self.clock()
        if found is not None and now - found[0] < self.ttl:
            return found[1]
        try:
            data = await c.get(path)
        except CloseguardError:
            data = None
        record = data if isinstance(data, dict) else None
        if len(self._cache) > 5000:
            self._cache.clear()
        self._cache[path] = (now, record)
        return record

    async def _currency(self, c: CloseClient) -> str:
        me = await self._read(c, "/me/")
        orgs = (me or {}).get("organizations") or []
        if orgs and isinstance(orgs[0], dict) and orgs[0].get("id"):
            org = await self._read(c, f"/organization/{orgs[0]['id']}/")
            if org and org.get("currency"):
                return str(org["currency"])
        return ""

    async def _status(self, c: CloseClient, kind: str, status_id: Any) -> str:
        statuses = await self._read(c, f"/status/{kind}/")
        for s in (statuses or {}).get("data") or []:
            if s.get("id") == status_id:
                return str(s.get("label") or status_id)
        return str(status_id)

    async def _name(self, c: CloseClient, record_id: Any) -> str:
        """A lead's or user's name, or the id itself."""
        if not isinstance(record_id, str):
            return str(record_id)
        for prefix, template in NAME_PREFIXES.items():
            if record_id.startswith(prefix):
                record = await self._read(c, template.format(record_id))
                if record:
                    return str(
                        record.get("display_name") or record.get("name") or record.get("email")
                        or record_id
                    )  # fmt: skip
        return record_id

    async def names(self, ids: Iterable[str]) -> dict[str, str]:
        """Names of lead and user ids (for the runs and audit pages); unknown ids left out."""
        wanted = sorted(
            {i for i in ids if isinstance(i, str) and i.startswith(tuple(NAME_PREFIXES))}
        )
        if not wanted:
            return {}
        out = {}
        async with self.client() as c:
            for record_id in wanted:
                name = await self._name(c, record_id)
                if name != record_id:
                    out[record_id] = name
        return out

    async def record_name(self, path: str) -> str | None:
        """A person's name for the record at ``path``: a deal as "Acme Robotics'
        'Expansion' deal", a lead or contact by its name; None if unknown."""
        parts = [p for p in relative_path(path).strip("/").split("/") if p]
        if len(parts) != 2 or parts[0] not in ("opportunity", "lead", "contact"):
            return None
        try:
            async with self.client() as c:
                record = await self._read(c, f"/{parts[0]}/{parts[1]}/")
        except CloseguardError:
            return None
        if not record:
            return None
        if parts[0] == "opportunity":
            lead, title = record.get("lead_name") or "a lead", record.get("note")
            return f"{possessive(str(lead))} {_quoted(title) + ' ' if title else ''}deal"
        name = record.get("display_name") or record.get("name")
        return f"{parts[0]} {name}" if name else None

    async def readable(self, kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` (field -> value of a ``kind`` record) as a person reads them: status
        ids as labels, amounts in the organization's currency, lead and user ids as names."""
        out = dict(values)
        try:
            async with self.client() as c:
                for key, value in values.items():
                    if not _shown(value):
                        continue
                    if key == "status_id" and kind in ("lead", "opportunity"):
                        out[key] = await self._status(c, kind, value)
                    elif key == "value" and kind == "opportunity":
                        out[key] = money(value, await self._currency(c))
                    elif key in ("user_id", "lead_id", "assigned_to"):
                        out[key] = await self._name(c, value)
        except CloseguardError:
            return dict(values)
        return out

    # -- sentences -------------------------------------------------------------------------

    async def sentence(self, approval: Approval) -> str:
        """What ``approval`` asks, in one sentence (never raises: a failure to read or
        build it is logged, and the catalog's summary of the endpoint stands in)."""
        try:
            async with self.client() as c:
                return await self._sentence(c, approval)
        except Exception:
            logging.getLogger(__name__).warning(
                "no sentence for %s (%s)", approval.id, approval.endpoint, exc_info=True
            )
            return _generic(approval, None)

    async def _sentence(self, c: CloseClient, a: Approval) -> str:
        body: Mapping[str, Any] = a.args.get("body") or {}
        path = relative_path(a.path)
        parts = [p for p in path.strip("/").split("/") if p]
        record_id = parts[1] if len(parts) > 1 and "_" in parts[1] else None
        ep = a.endpoint
        if ep == "lead.merge":
            source = await self._name(c, body.get("source"))
            destination = await self._name(c, body.get("destination"))
            return f"Merge lead {source} into {destination} (the source lead is deleted)"
        if ep.startswith("opportunity.") and a.method in ("PUT", "DELETE") and record_id:
            return await self._deal(c, a, record_id, body)
        if ep == "opportunity.create":
            lead = await self._name(c, body.get("lead_id"))
            amount = money(body.get("value"), await self._currency(c))
            return f"Add a deal to {lead}" + (f", {amount}" if _shown(body.get("value")) else "")
        if ep.startswith("lead.") and record_id:
            return await self._lead(c, a, record_id, body)
        if ep.startswith("activity.email.") and body.get("status") in SENDING:
            return await self._email(c, body)
        if ep.startswith("contact.") and record_id:
            contact = await self._read(c, f"/contact/{record_id}/")
            if contact:
                lead = await self._name(c, contact.get("lead_id"))
                verb = "Delete" if a.method == "DELETE" else "Update"
                return f"{verb} contact {contact.get('name') or record_id} of {lead}"
        lead_id = body.get("lead_id")
        return _generic(a, await self._name(c, lead_id) if lead_id else None)

    async def _deal(
        self, c: CloseClient, a: Approval, deal_id: str, body: Mapping[str, Any]
    ) -> str:
        deal = await self._read(c, f"/opportunity/{deal_id}/") or {}
        lead = deal.get("lead_name") or await self._name(c, deal.get("lead_id") or "a lead")
        title = deal.get("note")
        name = f"{possessive(str(lead))} {_quoted(title) + ' ' if title else ''}deal"
        currency = await self._currency(c) or str(deal.get("value_currency") or "")
        value = body.get("value", deal.get("value"))
        amount = money(value, currency) if _shown(value) else ""
        if a.method == "DELETE":
            return f"Delete {name}" + (f", {amount}" if amount else "")
        extras = _changes(body, skip=("status_id", "value", "user_id", "confidence"))
        if "user_id" in body:
            extras.insert(0, f"assign it to {await self._name(c, body['user_id'])}")
        if _shown(body.get("confidence")):
            extras.insert(0, f"confidence {body['confidence']}%")
        if "status_id" in body:
            status = await self._status(c, "opportunity", body["status_id"])
            head = f"Move {name} to {status}" + (f", {amount}" if amount else "")
        elif "value" in body:
            before = money(deal.get("value"), currency) if _shown(deal.get("value")) else "-"
            head = f"Change {name} from {before} to {amount}"
        else:
            head = f"Update {name}" + (f" ({amount})" if amount else "")
        return "; ".join([head, *extras])

    async def _lead(
        self, c: CloseClient, a: Approval, lead_id: str, body: Mapping[str, Any]
    ) -> str:
        lead = await self._read(c, f"/lead/{lead_id}/") or {}
        name = str(lead.get("display_name") or lead.get("name") or lead_id)
        if a.method == "DELETE":
            contacts = len(lead.get("contacts") or [])
            deals = len(lead.get("opportunities") or [])
            return f"Delete lead {name} with its {contacts} contacts and {deals} deals"
        parts: list[str] = []
        if _shown(body.get("name")) and body.get("name") != name:
            parts.append(f"Rename lead {name} to {body['name']}")
        if "status_id" in body:
            status = await self._status(c, "lead", body["status_id"])
            parts.append(f"Move lead {name} to {status}" if not parts else f"move it to {status}")
        extras = _changes(body, skip=("name", "status_id"))
        if not parts:
            parts.append(f"Update lead {name}")
        return "; ".join(parts + extras)

    async def _email(self, c: CloseClient, body: Mapping[str, Any]) -> str:
        verb = SENDING[str(body.get("status"))]
        to = [t for t in body.get("to") or [] if _shown(t)]
        lead = await self._name(c, body.get("lead_id")) if body.get("lead_id") else None
        text = f"{verb} an email"
        if to:
            text += f" to {', '.join(str(t) for t in to)}"
        if lead:
            text += f" on {lead}"
        if _shown(body.get("subject")):
            text += f": {_quoted(body['subject'])}"
        return text


def _changes(body: Mapping[str, Any], *, skip: Iterable[str]) -> list[str]:
    """``set field to value`` for the other fields sent (masked ones named only)."""
    out = []
    for key, value in sorted(body.items()):
        if key in skip:
            continue
        out.append(f"set {key}" if not _shown(value) else f"set {key} to {_quoted(value, 40)}")
    return out


def _generic(a: Approval, lead: str | None) -> str:
    ep = BY_NAME.get(a.endpoint)
    what = ep.summary.split(";")[0].split(". ")[0].rstrip(".") if ep else a.endpoint
    return what + (f" on {lead}" if lead else "")
