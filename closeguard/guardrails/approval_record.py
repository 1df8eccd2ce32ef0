"""An approval as read: the ``Approval`` record, its statuses, and how a stored row becomes
one (expiry read in).

A module of its own, on the standard library only, so ``closeguard approvals list`` reads a
SQLite store through ``closeguard.store.reader`` without importing SQLAlchemy; ``approvals``
(requests, decisions, waiting) builds every ``Approval`` it returns here too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from closeguard.guardrails.roles import DEFAULT_APPROVERS

__all__ = ["Approval", "Status", "from_row"]

Status = Literal["pending", "approved", "rejected", "consumed", "expired"]


@dataclass(frozen=True)
class Approval:
    id: str
    call_hash: str
    status: Status
    created: float
    expires: float
    endpoint: str
    method: str
    path: str
    access: str | None
    rule: str | None
    reason: str | None
    args: dict[str, Any]
    policy: str | None = None
    actor: str | None = None
    run_id: str | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    consumed_at: float | None = None
    approvers: tuple[str, ...] = DEFAULT_APPROVERS

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["approvers"] = list(self.approvers)
        return data


def from_row(row: Mapping[str, Any], now: float) -> Approval:
    """A stored ``approvals`` row as an ``Approval`` at ``now``: a pending or approved one
    past its expiry reads ``expired``; ``approvers`` NULL (rows made before roles) reads as
    the default roles."""
    data = dict(row)
    status = data["status"]
    if status in ("pending", "approved") and data["expires"] <= now:
        status = "expired"
    data["status"] = status
    data["args"] = json.loads(data["args"])
    roles = data.get("approvers")
    data["approvers"] = tuple(json.loads(roles)) if roles else DEFAULT_APPROVERS
    return Approval(**data)
