"""Stored rows as plain Python, on the standard library only.

The column order of the tables the command line reads and decides on (``audit``,
``approvals``, ``runs``, ``effects``, ``users``), the audit chain's genesis hash, and
``RunRow`` (a ``runs`` row as read). The SQLAlchemy table groups and the standard-library
``reader`` and ``writer`` share them, so a command on a SQLite store need not import
SQLAlchemy; a test holds each tuple to its table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from closeguard.store.fates import Fate

__all__ = [
    "APPROVAL_COLUMNS",
    "AUDIT_COLUMNS",
    "EFFECT_COLUMNS",
    "GENESIS",
    "RUN_COLUMNS",
    "USER_COLUMNS",
    "ApprovalMoves",
    "RunRow",
    "run_row",
]

GENESIS = "0" * 64
"""The ``prev_hash`` of the audit log's first row."""

AUDIT_COLUMNS = (
    "seq",
    "ts",
    "actor",
    "run_id",
    "call_id",
    "attempt",
    "policy",
    "endpoint",
    "method",
    "path",
    "access",
    "decision",
    "rule",
    "reason",
    "args",
    "status_code",
    "latency_us",
    "error",
    "approval_id",
    "prev_hash",
    "hash",
)
"""The ``audit`` table's columns, in the order rows are inserted."""

APPROVAL_COLUMNS = (
    "id",
    "call_hash",
    "status",
    "created",
    "expires",
    "policy",
    "actor",
    "run_id",
    "endpoint",
    "method",
    "path",
    "access",
    "rule",
    "reason",
    "args",
    "decided_by",
    "decided_at",
    "note",
    "consumed_at",
    "approvers",
)
"""The ``approvals`` table's columns, in table order."""

RUN_COLUMNS = (
    "seq",
    "id",
    "workflow",
    "trigger_key",
    "kind",
    "lead_id",
    "payload",
    "status",
    "attempts",
    "available_at",
    "lease_until",
    "worker",
    "approval_id",
    "error",
    "state",
    "created",
    "updated",
)
"""The ``runs`` table's columns, in table order."""

EFFECT_COLUMNS = ("run_id", "key", "status", "result", "created", "updated")
"""The ``effects`` table's columns, in table order."""

USER_COLUMNS = (
    "name",
    "roles",
    "email",
    "disabled",
    "notify",
    "token_id",
    "token_hash",
    "created",
    "updated",
)
"""The ``users`` table's columns, in table order."""


class ApprovalMoves:
    """The approval states' moves, on the two statements each storage writes (``ApprovalRows``
    in SQLAlchemy, the standard-library ``writer``'s ``ApprovalWriter``): ``_move``, one
    atomic conditional update, and ``_live``, the oldest unexpired row of a call in a
    status."""

    def _live(self, digest: str, status: str, now: float) -> dict[str, Any] | None:
        raise NotImplementedError

    def _move(self, approval_id: str, current: str, now: float, /, **values: Any) -> bool:
        """Set ``values`` on the approval if it is unexpired and still ``current`` (one atomic
        conditional update, so two deciders cannot both win); False if it was not."""
        raise NotImplementedError

    def decide(
        self, approval_id: str, status: str, *, by: str, note: str | None, now: float
    ) -> bool:
        """Set a pending, unexpired approval's decision; False if it was not one."""
        return self._move(
            approval_id, "pending", now, status=status, decided_by=by, decided_at=now, note=note
        )

    def granted(self, digest: str, now: float) -> dict[str, Any] | None:
        """An approved, unexpired, unused row for ``digest``."""
        return self._live(digest, "approved", now)

    def consume(self, approval_id: str, now: float) -> bool:
        """Mark an approved, unexpired approval used; False if it was not one."""
        return self._move(approval_id, "approved", now, status="consumed", consumed_at=now)


@dataclass(frozen=True)
class RunRow:
    """A run as stored. ``payload``: its trigger (``event``, ``tick``, ``params``)."""

    seq: int
    id: str
    workflow: str
    trigger_key: str
    kind: str
    lead_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    available_at: float
    lease_until: float | None
    worker: str | None
    approval_id: str | None
    error: str | None
    state: dict[str, Any] | None
    created: float
    updated: float
    fate: Fate | None = None
    """What became of its lead, read in the claim's transaction (None: not read)."""
    effects: tuple[Any, ...] | None = None
    """Its effect journal's rows (``EffectRow``), read in the claim's transaction (None:
    not read)."""


def run_row(row: Mapping[Any, Any]) -> RunRow:
    """A ``runs`` row (a mapping of its columns) as a ``RunRow``, JSON columns parsed."""
    data = dict(row)
    data["payload"] = json.loads(data["payload"])
    data["state"] = None if data["state"] is None else json.loads(data["state"])
    return RunRow(**data)
