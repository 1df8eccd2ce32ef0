"""The hash-chained audit log.

Every call the guard sees becomes one row: time, actor, run, endpoint, method, path, access
level, decision and the rule behind it, redacted arguments, status code, latency, error.
Rows are numbered (``seq`` from 1, no gaps) and chained::

    hash[n] = sha256(hash[n-1] + canonical_json(row n without its hash))   (hash[0] = "0"*64)

so editing, deleting, reordering or inserting a row breaks the chain at that row. The last
``seq`` and hash are also kept in ``audit_head``, updated in the same transaction as the
rows, so deleting rows from the tail is caught too.

Limits: whoever can write the database can recompute the whole chain and the head. To
catch that, keep a checkpoint elsewhere (``AuditLog.head()`` / ``closeguard audit verify
--expect-head SEQ:HASH``): a rewritten history no longer matches it.

Durability: ``append`` buffers rows in memory and writes them in one transaction when the
buffer holds ``batch_size`` rows, when the oldest is ``max_delay`` seconds old, on
``flush()``, on ``close()`` and at interpreter exit. Denials and approval requests are
flushed before the exception reaches the caller. A hard crash (kill -9) can lose at most
the rows of the current, unflushed batch.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import operator
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from closeguard.guardrails.redact import canonical_json
from closeguard.store import Store

__all__ = ["EMPTY_ROW", "GENESIS", "AuditLog", "AuditProblem", "VerifyReport", "row_hash"]

GENESIS = "0" * 64
CHAINED = (
    "seq", "ts", "actor", "run_id", "call_id", "attempt", "policy", "endpoint", "method",
    "path", "access", "decision", "rule", "reason", "args", "status_code", "latency_us",
    "error", "approval_id", "prev_hash",
)
_SUPPLIED = CHAINED[1:-1]
_pick = operator.itemgetter(*_SUPPLIED)
EMPTY_ROW: dict[str, Any] = dict.fromkeys(_SUPPLIED)
"""Every column ``append`` takes, unset; rows built from it take the fast path."""
_TS, _ARGS = _SUPPLIED.index("ts"), _SUPPLIED.index("args")
_live: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The chain hash of ``row`` after ``prev_hash``: sha256 over the chained columns' values.

    The values are hashed as a JSON array in ``CHAINED`` order, which is canonical because
    ``args`` is stored as canonical JSON text and every other column is a scalar.
    """
    return _chain(prev_hash, [row.get(k) for k in CHAINED])


def _chain(prev_hash: str, values: list[Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(values)).encode()).hexdigest()


_SECONDS: dict[int, str] = {}


def _iso(stamp: float) -> str:
    """``datetime.isoformat`` in UTC to the microsecond, formatting each second only once."""
    sec = int(stamp)
    prefix = _SECONDS.get(sec)
    if prefix is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        prefix = _SECONDS[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{int((stamp - sec) * 1e6):06d}+00:00"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class AuditProblem:
    """One break in the chain: where (``seq``), what kind, in words."""

    seq: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    problems: tuple[AuditProblem, ...]


class AuditLog:
    """Append-only, batched, hash-chained writes to the store's ``audit`` table."""

    def __init__(
        self, store: Store, *, batch_size: int = 1000, max_delay: float = 0.5
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._buffer: list[tuple[float, Mapping[str, Any]]] = []
        self._sql: str | None = None
        self._named = False
        self._oldest = 0.0
        self._lock = threading.Lock()
        _live.add(self)

    # -- writing ---------------------------------------------------------------------------

    def append(self, entry: Mapping[str, Any], *, flush: bool = False) -> None:
        """Queue one row (fields as in ``CHAINED`` minus seq/prev_hash; ``args`` any JSON).

        Cheap on purpose: formatting, hashing and the insert happen in ``flush``.
        """
        item = (time.time(), entry)
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(item)
            due = (
                flush
                or len(self._buffer) >= self.batch_size
                or time.monotonic() - self._oldest >= self.max_delay
            )
        if due:
            self.flush()

    @staticmethod
    def _prepare(stamp: float, entry: Mapping[str, Any]) -> list[Any]:
        """The row's values in ``CHAINED`` order, without ``seq`` and ``prev_hash``."""
        try:
            values = list(_pick(entry))
        except KeyError:
            values = [entry.get(k) for k in _SUPPLIED]
        if not values[_TS]:
            values[_TS] = _iso(stamp)
        args = values[_ARGS]
        if not isinstance(args, str):
            values[_ARGS] = canonical_json(args or {})
        return values

    def _insert_sql(self) -> str:
        if self._sql is None:
            dialect = self.store.engine.dialect
            prep = dialect.identifier_preparer
            cols = [*CHAINED, "hash"]
            style = dialect.paramstyle
            marks = {
                "qmark": ["?"] * len(cols),
                "format": ["%s"] * len(cols),
                "numeric": [f":{i + 1}" for i in range(len(cols))],
                "named": [f":{c}" for c in cols],
                "pyformat": [f"%({c})s" for c in cols],
            }[style]
            self._named = style in ("named", "pyformat")
            self._sql = (
                f"INSERT INTO {prep.format_table(self.store.tables.audit)} "
                f"({', '.join(prep.quote(c) for c in cols)}) VALUES ({', '.join(marks)})"
            )
        return self._sql

    def flush(self) -> int:
        """Write the buffered rows in one transaction; returns how many were written."""
        with self._lock:
            queued, self._buffer = self._buffer, []
        if not queued:
            return 0
        rows = [self._prepare(stamp, entry) for stamp, entry in queued]
        sql = self._insert_sql()
        t = self.store.tables
        try:
            with self.store.engine.begin() as conn:
                # Take the write lock first (row lock on PostgreSQL, RESERVED on SQLite).
                locked = conn.execute(
                    update(t.audit_head).where(t.audit_head.c.id == 1)
                    .values(seq=t.audit_head.c.seq)
                ).rowcount
                if not locked:
                    conn.execute(
                        t.audit_head.insert().values(id=1, seq=0, hash=GENESIS,
                                                     updated=now_iso())
                    )
                head = conn.execute(
                    select(t.audit_head.c.seq, t.audit_head.c.hash).where(
                        t.audit_head.c.id == 1
                    )
                ).one()
                seq, prev = int(head.seq), str(head.hash)
                out: list[Any] = []
                cols = [*CHAINED, "hash"]
                for values in rows:
                    seq += 1
                    full = [seq, *values, prev]
                    prev = _chain(prev, full)
                    full.append(prev)
                    out.append(dict(zip(cols, full, strict=True)) if self._named else tuple(full))
                conn.exec_driver_sql(sql, out)
                conn.execute(
                    update(t.audit_head).where(t.audit_head.c.id == 1)
                    .values(seq=seq, hash=prev, updated=now_iso())
                )
        except Exception:
            with self._lock:
                self._buffer[:0] = queued
            raise
        return len(rows)

    def close(self) -> None:
        self.flush()
        _live.discard(self)

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row written: a checkpoint to keep elsewhere."""
        t = self.store.tables
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
            ).first()
        return (int(row.seq), str(row.hash)) if row else (0, GENESIS)

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` rows, oldest first."""
        t = self.store.tables
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t.audit).order_by(t.audit.c.seq.desc()).limit(n)).all()
        return [dict(r._mapping) for r in reversed(rows)]

    def get(self, seq: int) -> dict[str, Any] | None:
        t = self.store.tables
        with self.store.engine.connect() as conn:
            row = conn.execute(select(t.audit).where(t.audit.c.seq == seq)).first()
        return dict(row._mapping) if row else None

    def rows(self, *, chunk: int = 1000) -> Iterator[dict[str, Any]]:
        """Every row in ``seq`` order, read in chunks."""
        t = self.store.tables
        last = None
        while True:
            query = select(t.audit).order_by(t.audit.c.seq).limit(chunk)
            if last is not None:
                query = query.where(t.audit.c.seq > last)
            with self.store.engine.connect() as conn:
                batch = conn.execute(query).all()
            if not batch:
                return
            for r in batch:
                yield dict(r._mapping)
            last = batch[-1].seq

    def verify(self, *, expect_head: tuple[int, str] | None = None) -> VerifyReport:
        """Walk the chain; every problem names the ``seq`` where it shows."""
        problems: list[AuditProblem] = []
        prev_hash, expected_seq, count = GENESIS, 1, 0
        for row in self.rows():
            count += 1
            seq = int(row["seq"])
            if seq != expected_seq:
                kind = "gap" if seq > expected_seq else "order"
                problems.append(AuditProblem(
                    seq, kind,
                    f"expected seq {expected_seq}, found {seq}: rows deleted or renumbered",
                ))
            if row["prev_hash"] != prev_hash:
                problems.append(AuditProblem(
                    seq, "link",
                    f"row {seq} does not follow the row before it "
                    "(deleted, inserted or reordered rows)",
                ))
            if row_hash(row["prev_hash"], row) != row["hash"]:
                problems.append(AuditProblem(
                    seq, "hash", f"row {seq} was changed after it was written"
                ))
            prev_hash, expected_seq = row["hash"], seq + 1
        head_seq, head_hash = self.head()
        last_seq = expected_seq - 1
        if head_seq != last_seq or (count and head_hash != prev_hash):
            kind = "truncated" if head_seq > last_seq else "head"
            problems.append(AuditProblem(
                None if head_seq > last_seq else last_seq, kind,
                f"head says the log ends at seq {head_seq} ({head_hash[:12]}…), the rows end "
                f"at seq {last_seq} ({prev_hash[:12]}…)",
            ))
        if expect_head is not None:
            seq, digest = expect_head
            found = self.get(seq)
            if found is None or found["hash"] != digest:
                problems.append(AuditProblem(
                    seq, "checkpoint",
                    f"checkpoint seq {seq} hash {digest[:12]}… is not in the log: history "
                    "was rewritten",
                ))
        return VerifyReport(not problems, count, head_seq, head_hash, tuple(problems))


@atexit.register
def _flush_all() -> None:
    for log in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit: nowhere left to report
            log.flush()
