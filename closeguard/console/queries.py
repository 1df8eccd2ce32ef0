"""What the console's pages read from the store: sync functions for ``store.run``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.sql.elements import ColumnElement

from closeguard.guardrails import Approval, Approvals
from closeguard.store import Store
from closeguard.store.runs import RunRow, RunRows

__all__ = ["AuditFilter", "approvals_digest", "audit_rows", "runs_digest", "when"]

AUDIT_LIMIT = 200


def when(ts: float | None) -> str:
    """Epoch seconds as UTC text (absolute, so a re-rendered page only changes with data)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _digest(parts: Iterator[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def approvals_digest(approvals: Approvals) -> str:
    """Changes whenever an approval arrives, is decided, used or expires."""
    return _digest(f"{a.id}:{a.status}" for a in approvals.list(limit=200))


def runs_digest(rows: RunRows) -> str:
    return _digest(f"{r.id}:{r.status}:{r.updated}" for r in rows.list(limit=100))


def recent(approvals: Approvals) -> tuple[list[Approval], list[Approval]]:
    """Pending approvals newest first, and the last decided ones."""
    every = approvals.list(limit=200)
    pending = [a for a in every if a.status == "pending"]
    decided = [a for a in every if a.status != "pending"][:20]
    return pending, decided


def runs_overview(rows: RunRows) -> tuple[list[RunRow], list[RunRow], list[RunRow]]:
    """Recent runs, the dead-lettered ones, and the skipped ones (moot: nothing failed)."""
    return (
        rows.list(limit=50),
        rows.list(status="dead", limit=50),
        rows.list(status="skipped", limit=20),
    )


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filters; times are ISO text compared with the rows' ``ts``."""

    actor: str = ""
    endpoint: str = ""
    decision: str = ""
    since: str = ""
    until: str = ""

    def where(self, store: Store) -> ColumnElement[bool] | None:
        t = store.tables.audit
        terms: list[ColumnElement[bool]] = []
        if self.actor:
            terms.append(t.c.actor == self.actor)
        if self.endpoint:
            terms.append(t.c.endpoint == self.endpoint)
        if self.decision:
            terms.append(t.c.decision == self.decision)
        if self.since:
            terms.append(t.c.ts >= _iso(self.since))
        if self.until:
            terms.append(t.c.ts <= _iso(self.until, end=True))
        return and_(*terms) if terms else None

    def query(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


def _iso(text: str, *, end: bool = False) -> str:
    """A form's UTC time (``2026-11-27T16:00``, ``2026-11-27 16:00`` or a date) as a bound on
    the rows' ISO ``ts`` text; an upper bound covers the whole minute or day it names.
    ``ValueError`` for anything else."""
    value = text.strip().replace(" ", "T")
    datetime.fromisoformat(value)
    return value + "~" if end else value


def audit_rows(
    store: Store, flt: AuditFilter, *, limit: int | None = AUDIT_LIMIT
) -> list[dict[str, Any]]:
    """Matching rows, newest first (``limit`` None: all of them, oldest first, for export)."""
    t = store.tables.audit
    query = select(t)
    where = flt.where(store)
    if where is not None:
        query = query.where(where)
    query = query.order_by(t.c.seq) if limit is None else query.order_by(t.c.seq.desc())
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        try:
            row["args_obj"] = json.loads(row["args"])
        except (TypeError, ValueError):
            row["args_obj"] = row["args"]
    return rows


def calls_of(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every audited call of one run, in order (a query on ``run_id``)."""
    t = store.tables.audit
    with store.engine.connect() as conn:
        found = conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.seq))
        return [dict(r._mapping) for r in found]


def audit_choices(store: Store) -> dict[str, list[str]]:
    """The distinct actors, endpoints and decisions, for the filter menus."""
    t = store.tables.audit
    out: dict[str, list[str]] = {}
    with store.engine.connect() as conn:
        for name in ("actor", "endpoint", "decision"):
            col = t.c[name]
            found = conn.execute(select(col).where(col.is_not(None)).distinct().order_by(col))
            out[name] = [str(v) for (v,) in found]
    return out
