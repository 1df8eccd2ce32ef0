"""The current state of the records a pending call would touch, read through the guard.

The console reads Close (or the simulator) with a client under the ``read-only`` policy,
audited as actor ``console``, so what a manager looked at before deciding is on record
too. An update shows each field it sets, now and after; a merge shows both leads; a delete
shows what would go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from closeguard.guardrails import Approval, Guarded, Policy
from closeguard.notify import Describer
from closeguard.store import Store
from closeguard.tools import CloseClient, CloseguardError
from closeguard.tools.catalog import relative_path

__all__ = ["CONSOLE_ACTOR", "Change", "Reader", "Touched"]

CONSOLE_ACTOR = "console"
READ_POLICY = "read-only"
FIELD_NAMES = {"status_id": "status", "user_id": "owner", "lead_id": "lead"}
"""Fields as the diff names them, where the id behind them is shown as a name."""
LEAD_FIELDS = ("display_name", "status_label", "description", "url", "date_created")


@dataclass(frozen=True)
class Change:
    field: str
    current: Any
    proposed: Any

    @property
    def differs(self) -> bool:
        return bool(self.current != self.proposed)


@dataclass
class Touched:
    """One record a call touches: what it is now and what the call does to it."""

    label: str
    path: str
    effect: str
    current: dict[str, Any] | None = None
    changes: list[Change] = field(default_factory=list)
    error: str | None = None
    name: str | None = None
    """What a person calls the record ("Acme Robotics' 'Expansion' deal"), when known."""


def _lead_summary(lead: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: lead[k] for k in LEAD_FIELDS if lead.get(k) not in (None, "")}
    emails = [e.get("email") for c in lead.get("contacts") or [] for e in c.get("emails") or []]
    out["contacts"] = ", ".join(
        str(c.get("name") or c.get("id")) for c in lead.get("contacts") or []
    )
    out["emails"] = ", ".join(str(e) for e in emails if e)
    out["opportunities"] = len(lead.get("opportunities") or [])
    out["tasks"] = len(lead.get("tasks") or [])
    return out


def plan(approval: Approval) -> list[Touched]:
    """Which records ``approval``'s call touches, before anything is read."""
    body = approval.args.get("body") or {}
    path = relative_path(approval.path)
    if approval.endpoint == "lead.merge":
        source, destination = body.get("source"), body.get("destination")
        return [
            Touched(f"source lead {source}", f"/lead/{source}/", "merged away: its contacts, "
                    "opportunities, tasks and activities move to the destination, then it "
                    "is deleted"),
            Touched(f"destination lead {destination}", f"/lead/{destination}/",
                    "kept (its id survives) and receives the source's records"),
        ]  # fmt: skip
    if approval.method == "PUT":
        return [Touched(path, path, "updated")]
    if approval.method == "DELETE":
        return [Touched(path, path, "deleted")]
    return []


class Reader:
    """Guarded read-only access to Close for the console (actor ``console``)."""

    def __init__(
        self,
        store: Store,
        *,
        api_key: str,
        base_url: str | None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.api_key = api_key
        self.base_url = base_url
        self.transport = transport
        self._policy = Policy.load(READ_POLICY)
        self.describer = Describer(self.client)
        """Sales sentences and names, read through this reader's client (one cache)."""

    def client(self) -> CloseClient:
        return CloseClient(
            self.api_key,
            base_url=self.base_url,
            transport=self.transport,
            policy=Guarded(self._policy, store=self.store),
            actor=CONSOLE_ACTOR,
        )

    async def touched(self, approval: Approval) -> list[Touched]:
        """The touched records of a pending call, each read now."""
        records = plan(approval)
        if not records:
            return records
        body = approval.args.get("body") or {}
        async with self.client() as client:
            for record in records:
                try:
                    current = await client.get(record.path)
                except CloseguardError as exc:
                    record.error = str(exc)
                    continue
                data = current if isinstance(current, dict) else {"value": current}
                if approval.endpoint == "lead.merge":
                    record.current = _lead_summary(data)
                else:
                    kind = relative_path(record.path).strip("/").split("/")[0]
                    now = await self.describer.readable(kind, {k: data.get(k) for k in body})
                    after = await self.describer.readable(kind, dict(body))
                    record.current = dict(sorted(now.items())) or data
                    record.changes = [
                        Change(FIELD_NAMES.get(k, k), now.get(k), after[k]) for k in sorted(body)
                    ]
                name = await self.describer.record_name(record.path)
                if name and approval.endpoint == "lead.merge":
                    name = f"{record.label.split(' ')[0]} {name}"
                record.name = name
        if approval.endpoint == "lead.merge":
            _merge_outcome(*records)
        return records


def _merge_outcome(source: Touched, destination: Touched) -> None:
    """The destination's fields now and after the merge, beside the source's."""
    if source.current is None or destination.current is None:
        return
    src, dst = source.current, destination.current
    after = dict(dst)
    for key in ("contacts", "emails"):
        # every contact moves, so a name both leads have appears twice after the merge
        after[key] = ", ".join(str(text) for text in (dst.get(key), src.get(key)) if text)
    for key in ("opportunities", "tasks"):
        after[key] = int(dst.get(key) or 0) + int(src.get(key) or 0)
    destination.changes = [Change(k, dst.get(k), after.get(k)) for k in dst]
