"""A store with history to prune: old finished runs (journal, checkpoints, jobs), old and
recent inbox rows, an unfinished run and an open approval with their audit rows, and audit
rows on both sides of the cutoff."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy import select, text, update

from closeguard.guardrails import AuditLog
from closeguard.store import Store
from closeguard.store.approvals import ApprovalRows
from closeguard.store.effects import EffectRows
from closeguard.store.inbox import InboxRows
from closeguard.store.runs import RunRows

DAY = 86400.0
NOW = time.time()
OLD = NOW - 200 * DAY
CUTOFF = datetime.fromtimestamp(NOW - 90 * DAY, UTC)


def iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="microseconds")


@dataclass
class Seeded:
    """What ``seed`` made: which runs, events and threads should go and which stay."""

    old_runs: list[str] = field(default_factory=list)
    kept_runs: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    old_events: list[str] = field(default_factory=list)
    kept_events: list[str] = field(default_factory=list)
    approval: str = ""
    old_audit: int = 0
    first_kept_audit: int = 0


def _audit_row(i: int, ts: float, **extra: Any) -> dict[str, Any]:
    return {
        "ts": iso(ts),
        "actor": "bot",
        "run_id": extra.pop("run_id", None),
        "call_id": f"c{i}",
        "attempt": 1,
        "policy": "p",
        "endpoint": "lead.get",
        "method": "GET",
        "path": f"/lead/lead_{i}/",
        "access": "read",
        "decision": extra.pop("decision", "allow"),
        "rule": "grants.lead",
        "args": {"params": {"i": i}},
        "status_code": 200,
        "latency_us": 100 + i,
        **extra,
    }


def _run(i: int, workflow: str = "follow-up") -> dict[str, Any]:
    return {
        "id": f"run_{workflow}_{i}",
        "workflow": workflow,
        "trigger_key": f"event:ev_{workflow}_{i}",
        "kind": "event",
        "lead_id": f"lead_{i % 3}",
        "payload": {"event": {"id": f"ev_{workflow}_{i}"}},
    }


def seed(store: Store, *, old_runs: int = 5, old_audit: int = 30, pin: bool = True) -> Seeded:
    """Fill ``store``; audit rows ``1..old_audit`` are old, then (with ``pin``) the rows of
    an unfinished run and an open approval (old too, so they must hold the boundary), then
    recent ones."""
    out = Seeded()
    old_rows = RunRows(store, now=lambda: OLD)
    requests = [_run(i) for i in range(old_runs)]
    old_rows.enqueue(requests)
    effects = EffectRows(store)
    for r in requests:
        old_rows.settle(r["id"], None, status="completed")
        effects.intent(r["id"], "note:1")
        effects.done(r["id"], "note:1", {"id": "acti_1"})
        out.old_runs.append(r["id"])
    waiting = _run(99, "triage")
    old_rows.enqueue([waiting])
    old_rows.settle(waiting["id"], None, status="waiting_approval")
    queued = _run(98, "triage")
    old_rows.enqueue([queued])
    out.unfinished = [waiting["id"], queued["id"]]
    effects.intent(waiting["id"], "note:1")
    new_rows = RunRows(store, now=lambda: NOW - DAY)
    recent = _run(100_000)
    new_rows.enqueue([recent])
    new_rows.settle(recent["id"], None, status="failed", error="boom")
    out.kept_runs = [recent["id"]]

    inbox = InboxRows(store)
    with store.engine.begin() as conn:
        ids = inbox.insert(conn, [{"id": f"ev_old_{i}"} for i in range(4)], "webhook")
        ids += inbox.insert(conn, [{"id": "ev_recent"}, {"id": "ev_undispatched"}], "webhook")
        inbox.mark_dispatched(conn, ids[:-1])
        t = store.tables.inbox
        conn.execute(
            update(t).where(t.c.event_id.in_([*ids[:4], "ev_undispatched"])).values(received=OLD)
        )
        conn.execute(update(t).where(t.c.event_id == "ev_recent").values(received=NOW - 40 * DAY))
    out.old_events = ids[:4]
    out.kept_events = ["ev_recent", "ev_undispatched"]

    approval = "appr_open"
    ApprovalRows(store).open_or_insert(
        {
            "id": approval,
            "call_hash": "h" * 64,
            "status": "pending",
            "created": NOW,
            "expires": NOW + DAY,
            "endpoint": "lead.delete",
            "method": "DELETE",
            "path": "/lead/lead_1/",
            "args": "{}",
        },
        NOW,
    )
    out.approval = approval
    log = AuditLog(store, batch_size=10_000, max_delay=3600)
    for i in range(old_audit):
        log.append(_audit_row(i, OLD + i))
    pinned = {"run_id": waiting["id"]} if pin else {}
    log.append(_audit_row(old_audit, OLD + old_audit, **pinned))
    pinned = {"approval_id": approval, "decision": "deny"} if pin else {}
    log.append(_audit_row(old_audit + 1, OLD + old_audit + 1, **pinned))
    for i in range(old_audit + 2, old_audit + 12):
        log.append(_audit_row(i, NOW - DAY + i))
    log.flush()
    out.old_audit = old_audit
    out.first_kept_audit = old_audit + 1
    return out


def put_checkpoint(saver: Any, thread_id: str) -> None:
    saver.put(
        {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}},
        empty_checkpoint(),
        {"source": "input", "step": -1, "parents": {}},
        {},
    )


def run_ids(store: Store) -> set[str]:
    t = store.tables.runs
    with store.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(select(t.c.id))}


def event_ids(store: Store) -> set[str]:
    t = store.tables.inbox
    with store.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(select(t.c.event_id))}


def effect_runs(store: Store) -> set[str]:
    t = store.tables.effects
    with store.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(select(t.c.run_id))}


def audit_seqs(store: Store) -> list[int]:
    t = store.tables.audit
    with store.engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(select(t.c.seq).order_by(t.c.seq))]


def table_counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in ("runs", "effects", "inbox", "audit", "approvals")
        }


def archives(folder: Path) -> list[Path]:
    return sorted(folder.glob("audit-*.jsonl"))


__all__ = [
    "CUTOFF",
    "DAY",
    "NOW",
    "OLD",
    "Seeded",
    "archives",
    "audit_seqs",
    "effect_runs",
    "event_ids",
    "put_checkpoint",
    "run_ids",
    "seed",
    "table_counts",
]
