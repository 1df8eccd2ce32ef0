"""The ``runs`` table and its queries: the embedded run queue and every run's record.

A run is claimed only when no earlier unfinished run of the same lead is queued (a retry
waiting for its backoff included) or running, so runs for one lead execute in order. A
claim is one ``UPDATE ... WHERE seq = (first claimable) RETURNING``: atomic on SQLite, and
re-checked row by row on PostgreSQL. A worker holds a lease it renews; a run whose lease ran
out (its worker died) is claimable again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ClauseElement

from closeguard.store.core import Prepared, Store, dialect_insert, prepare, table_group
from closeguard.store.records import RunRow, run_row

__all__ = ["ACTIVE", "FINAL", "RunRow", "RunRows", "define"]

ACTIVE = ("queued", "running")
"""Statuses that hold a run's lead: later runs of that lead wait."""
FINAL = ("completed", "failed", "rejected", "dead", "skipped")
"""``skipped``: the run was moot (its lead, deal or task no longer exists); ``error`` says why."""
WORKFLOW_STATUS_INDEX = "ix_runs_workflow_status"
"""A claim's search: the unfinished runs of the worker's workflows, never the finished
ones, which pile up with every run ever made (migration ``0003`` adds it to older stores)."""


@table_group
def define(metadata: MetaData) -> None:
    Table(
        "runs",
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("id", String(64), nullable=False, unique=True),
        Column("workflow", String(200), nullable=False),
        Column("trigger_key", String(400), nullable=False),
        Column("kind", String(10), nullable=False),
        Column("lead_id", String(100)),
        Column("payload", Text, nullable=False),
        Column("status", String(20), nullable=False, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("available_at", Float, nullable=False),
        Column("lease_until", Float),
        Column("worker", String(200)),
        Column("approval_id", String(64)),
        Column("error", Text),
        Column("state", Text),
        Column("created", Float, nullable=False),
        Column("updated", Float, nullable=False),
        UniqueConstraint("workflow", "trigger_key", name="runs_once_per_trigger"),
        Index("ix_runs_lead_status", "lead_id", "status"),
        Index(WORKFLOW_STATUS_INDEX, "workflow", "status"),
    )


def _row(row: Row[Any]) -> RunRow:
    return run_row(row._mapping)


@dataclass(frozen=True)
class _Prepared:
    first: Prepared
    take: Prepared


class RunRows:
    """Synchronous queries on ``runs``; ``now`` is the queue's clock (epoch seconds)."""

    def __init__(self, store: Store, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.table = store.tables["runs"]
        self.now = now
        self._prepared: dict[tuple[bool, int | None], _Prepared] = {}

    def insert(self, conn: Connection, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        """Queue the runs not already there (by workflow and trigger key); their ids.

        One ``INSERT ... ON CONFLICT DO NOTHING``, so concurrent writers of the same run
        (two processes firing one tick) store it once without an error.
        """
        if not requests:
            return []
        now = self.now()
        rows = [
            {
                "id": r["id"],
                "workflow": r["workflow"],
                "trigger_key": r["trigger_key"],
                "kind": r["kind"],
                "lead_id": r.get("lead_id"),
                "payload": json.dumps(r["payload"], default=str),
                "status": "queued",
                "attempts": 0,
                "available_at": now,
                "created": now,
                "updated": now,
            }
            for r in requests
        ]
        if len(rows) == 1:
            conflict = ("workflow", "trigger_key")
            return self.store.insert_new(conn, self.table, rows[0], conflict, "id")
        statement = (
            dialect_insert(self.store.dialect, self.table)
            .on_conflict_do_nothing(index_elements=["workflow", "trigger_key"])
            .returning(self.table.c.id, sort_by_parameter_order=True)
        )
        return [str(r[0]) for r in conn.execute(statement, rows)]

    def enqueue(self, requests: Sequence[Mapping[str, Any]]) -> list[str]:
        with self.store.engine.begin() as conn:
            return self.insert(conn, requests)

    def _claimable(self, now: Any) -> Any:
        t = self.table
        other = t.alias("other")
        ready = or_(
            and_(t.c.status == "queued", t.c.available_at <= now),
            and_(t.c.status == "running", t.c.lease_until < now),
        )
        blocked = exists().where(
            and_(
                other.c.lead_id == t.c.lead_id,
                other.c.status.in_(ACTIVE),
                other.c.seq != t.c.seq,
                or_(
                    other.c.seq < t.c.seq,
                    and_(other.c.status == "running", other.c.lease_until >= now),
                ),
            )
        )
        # ``status IN ACTIVE`` repeats what ``ready`` says, so the planner can see it and
        # search by status instead of scanning every run of a workflow ever made.
        return and_(t.c.status.in_(ACTIVE), ready, or_(t.c.lead_id.is_(None), not_(blocked)))

    def _claim_sql(self, conn: Connection, only: bool, workflows: int | None) -> _Prepared:
        """The claim's two statements for this shape of claim, compiled once per queue and
        shape: the statement is built and compiled on the first claim only, and every later
        claim hands the driver its SQL string and the values (no SQLAlchemy construct, no
        cache key, on the hot path)."""
        key = (only, workflows)
        found = self._prepared.get(key)
        if found is None:
            found = self._prepared[key] = self._prepare(conn, only, workflows)
        return found

    def _prepare(self, conn: Connection, only: bool, workflows: int | None) -> _Prepared:
        t = self.table
        now: Any = bindparam("now", 0.0)
        first = select(t.c.seq).where(self._claimable(now)).order_by(t.c.seq).limit(1)
        if only:
            first = first.where(t.c.id == bindparam("only", ""))
        if workflows is not None:
            names: list[Any] = [bindparam(f"workflow_{i}", "") for i in range(workflows)]
            first = first.where(t.c.workflow.in_(names) if names else false())
        take = (
            update(t)
            .where(and_(t.c.seq == bindparam("seq", 0), self._claimable(now)))
            .values(
                status="running",
                worker=bindparam("worker", ""),
                lease_until=bindparam("until", 0.0),
                attempts=t.c.attempts + 1,
                updated=now,
            )
            .returning(*t.c)
        )
        return _Prepared(prepare(conn, first), prepare(conn, take))

    def claim(
        self,
        worker: str,
        lease: float,
        *,
        only: str | None = None,
        workflows: Collection[str] | None = None,
    ) -> RunRow | None:
        """Take the first claimable run for ``lease`` seconds (attempts counted): ``only``
        that run, or only runs of ``workflows`` (those this worker can execute)."""
        with self.store.engine.begin() as conn:
            return self.claim_in(conn, worker, lease, only=only, workflows=workflows)

    def claim_in(
        self,
        conn: Connection,
        worker: str,
        lease: float,
        *,
        only: str | None = None,
        workflows: Collection[str] | None = None,
    ) -> RunRow | None:
        """``claim`` in ``conn``'s transaction (merged with the store work around it).

        First a read finds the first claimable run; a claim that finds none ends there,
        without taking SQLite's write lock. The update then re-checks the run is claimable
        (another process may have taken it in between) and takes it.
        """
        names = None if workflows is None else list(workflows)
        prepared = self._claim_sql(conn, only is not None, None if names is None else len(names))
        now = self.now()
        values: dict[str, Any] = {"now": now, "only": only, "worker": worker, "until": now + lease}
        for i, name in enumerate(names or ()):
            values[f"workflow_{i}"] = name
        for _ in range(3):
            seq = prepared.first.execute(conn, values).scalar()
            if seq is None:
                return None
            row = prepared.take.execute(conn, {**values, "seq": seq}).first()
            if row is not None:
                return _row(row)
        return None

    def heartbeat(self, run_id: str, worker: str, lease: float) -> bool:
        t = self.table
        now = self.now()
        with self.store.engine.begin() as conn:
            changed = conn.execute(
                update(t)
                .where(and_(t.c.id == run_id, t.c.worker == worker, t.c.status == "running"))
                .values(lease_until=now + lease, updated=now)
            ).rowcount
        return bool(changed)

    def settle(self, run_id: str, holder: str | None, **values: Any) -> bool:
        """Set a run's outcome; with ``holder``, only while that worker still holds it."""
        with self.store.engine.begin() as conn:
            return self.settle_in(conn, run_id, holder, values)

    def settle_in(
        self, conn: Connection, run_id: str, holder: str | None, values: Mapping[str, Any]
    ) -> bool:
        """``settle`` in ``conn``'s transaction."""
        values = dict(values)
        if "state" in values and values["state"] is not None:
            values["state"] = json.dumps(values["state"], default=str)
        if any(isinstance(v, ClauseElement) for v in values.values()):
            t = self.table
            where = t.c.id == run_id
            if holder is not None:
                where = and_(where, t.c.worker == holder, t.c.status == "running")
            changed = conn.execute(update(t).where(where).values(updated=self.now(), **values))
        else:
            changed = self._settle_prepared(conn, run_id, holder, values)
        if changed.rowcount:
            self._settled(conn, run_id, values)
        return bool(changed.rowcount)

    def _settle_prepared(
        self, conn: Connection, run_id: str, holder: str | None, values: Mapping[str, Any]
    ) -> Any:
        """``settle_in``'s plain values as one prepared ``UPDATE`` (the hot path's)."""
        names = tuple(sorted(values))
        sql = self.store.prepared(
            conn, ("runs.settle", holder is None, names), lambda: self._settle(holder, names)
        )
        given = {f"v_{k}": v for k, v in values.items()}
        given.update(run_id=run_id, now=self.now())
        if holder is not None:
            given["holder"] = holder
        return sql.execute(conn, given)

    def _settle(self, holder: str | None, names: tuple[str, ...]) -> Any:
        """``settle_in``'s ``UPDATE`` of the columns ``names`` (bound as ``v_<name>``)."""
        t = self.table
        where = t.c.id == bindparam("run_id", "")
        if holder is not None:
            where = and_(where, t.c.worker == bindparam("holder", ""), t.c.status == "running")
        sets: dict[str, Any] = {n: bindparam(f"v_{n}", None, type_=t.c[n].type) for n in names}
        return update(t).where(where).values(updated=bindparam("now", 0.0), **sets)

    def requeue(self, run_id: str, from_statuses: Sequence[str], **values: Any) -> bool:
        """Back to ``queued`` now, keeping its place (seq) in its lead's order."""
        t = self.table
        now = self.now()
        with self.store.engine.begin() as conn:
            changed = conn.execute(
                update(t)
                .where(and_(t.c.id == run_id, t.c.status.in_(from_statuses)))
                .values(
                    status="queued",
                    available_at=now,
                    lease_until=None,
                    worker=None,
                    updated=now,
                    **values,
                )
            ).rowcount
            if changed:
                self._requeued(conn, run_id)
        return bool(changed)

    def follow_merge(self, conn: Connection, source: str, destination: str) -> int:
        """In ``conn``'s transaction: the unfinished runs of lead ``source`` (merged away)
        now belong to ``destination``, so they keep their order among its runs; how many."""
        t = self.table
        changed = conn.execute(
            update(t)
            .where(and_(t.c.lead_id == source, t.c.status.not_in(FINAL)))
            .values(lead_id=destination, updated=self.now())
        ).rowcount
        return int(changed or 0)

    def retarget(self, run_id: str, lead_id: str) -> None:
        """The run continues on ``lead_id`` (its lead was merged into it)."""
        t = self.table
        with self.store.engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.id == run_id).values(lead_id=lead_id, updated=self.now())
            )
            self._relocked(conn, [run_id], lead_id)

    def _relocked(self, conn: Connection, run_ids: Sequence[str], lead_id: str) -> None:
        """Hook: a job engine moves the runs' jobs to ``lead_id``'s lock here."""

    def _settled(self, conn: Connection, run_id: str, values: Mapping[str, Any]) -> None:
        """Hook in ``settle``'s transaction: a job engine mirrors the outcome here."""

    def _requeued(self, conn: Connection, run_id: str) -> None:
        """Hook in ``requeue``'s transaction: a job engine puts its job back here."""

    def get(self, run_id: str) -> RunRow | None:
        t = self.table
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == run_id)).first()
        return None if row is None else _row(row)

    def by_trigger(self, workflow: str, trigger_key: str) -> RunRow | None:
        t = self.table
        query = select(t).where(and_(t.c.workflow == workflow, t.c.trigger_key == trigger_key))
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row(row)

    def find(self, prefix: str) -> list[RunRow]:
        """Runs whose id starts with ``prefix`` (for ids typed by hand)."""
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.id.startswith(prefix)).limit(5)).all()
        return [_row(r) for r in rows]

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        """Newest first."""
        t = self.table
        query = select(t).order_by(t.c.seq.desc()).limit(limit)
        if isinstance(status, str):
            query = query.where(t.c.status == status)
        elif status is not None:
            query = query.where(t.c.status.in_(status))
        if workflow is not None:
            query = query.where(t.c.workflow == workflow)
        with self.store.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        t = self.table
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all()
        return {str(s): int(n) for s, n in rows}
