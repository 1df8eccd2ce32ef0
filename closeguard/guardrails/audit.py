"""The hash-chained audit log.

Every call the guard sees becomes one row: time, actor, run, endpoint, method, path, access
level, decision and the rule behind it, redacted arguments, status code, latency, error.
Rows are numbered (``seq`` from 1, no gaps) and chained::

    hash[n] = sha256(hash[n-1] + canonical_json(row n without its hash))   (hash[0] = "0"*64)

so editing, deleting, reordering or inserting a row breaks the chain at that row. The last
``seq`` and hash are also kept in ``audit_head``, updated in the same transaction as the
rows, so deleting rows from the tail is caught too.

Retention (``closeguard store prune``) removes a prefix of the chain: the rows are first
exported to an archive file, then an *anchor* row (``decision`` ``anchor``, itself chained
after the head) records the last pruned ``seq`` and its hash, then the rows are deleted.
``verify`` accepts a chain that starts after seq 1 only when an anchor in it vouches for
the missing prefix; ``closeguard.guardrails.archive`` proves the archive files.

Limits: whoever can write the database can recompute the whole chain and the head. To
catch that, keep a checkpoint elsewhere (``AuditLog.head()`` / ``closeguard audit verify
--expect-head SEQ:HASH``): a rewritten history no longer matches it.

Durability: ``append`` buffers rows in memory and writes them in one transaction when the
buffer holds ``batch_size`` rows, when the oldest is ``max_delay`` seconds old, on
``flush()``, on ``close()`` and at interpreter exit. Async callers (the guard transport)
``queue`` rows and ``await aflush()``, which writes on the store's worker thread. Denials
and approval requests are flushed before the exception reaches the caller. A hard crash
(kill -9) can lose at most the rows of the current, unflushed batch: on SQLite (WAL,
``synchronous=NORMAL``) a committed batch survives the death of the process; see
``AuditLog.flush``.
"""

from __future__ import annotations

import atexit
import contextlib
import operator
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from closeguard.guardrails.chain import (
    ANCHOR,
    CHAINED,
    AuditProblem,
    VerifyReport,
    anchor_target,
    link,
    row_hash,
    verify,
)
from closeguard.guardrails.redact import canonical_json
from closeguard.store.records import GENESIS
from closeguard.telemetry import metrics, tracing
from closeguard.tools.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from closeguard.store import Store
    from closeguard.store.audit import AuditRows
    from closeguard.store.auditsql import Chain

__all__ = [
    "ANCHOR",
    "EMPTY_ROW",
    "GENESIS",
    "RECORDED",
    "AuditLog",
    "AuditProblem",
    "AuditStorage",
    "VerifyReport",
    "anchor_target",
    "row_hash",
]

_SUPPLIED = CHAINED[1:-1]
RECORDED = _SUPPLIED[1:]
"""The columns ``AuditLog.record`` takes, in order: every supplied one but ``ts``."""
_WIDTH = len(_SUPPLIED)
_pick = operator.itemgetter(*RECORDED)
EMPTY_ROW: dict[str, Any] = dict.fromkeys(_SUPPLIED)
"""Every column ``append`` takes, unset; rows built from it take the fast path."""
_ARGS = RECORDED.index("args")
_SEEN = operator.itemgetter(
    *(RECORDED.index(c) for c in ("method", "policy", "decision", "status_code"))
)
_TRACED = operator.itemgetter(
    *(RECORDED.index(c) for c in ("endpoint", "decision", "rule", "approval_id", "status_code"))
)
_live: weakref.WeakSet[AuditLog] = weakref.WeakSet()
ANCHOR_ACTOR = "closeguard-retention"


_SECONDS: dict[int, str] = {}


def _iso(stamp_ns: int) -> str:
    """``datetime.isoformat`` in UTC to the microsecond (truncated) of a ``time.time_ns()``
    stamp, formatting each second only once."""
    sec, ns = divmod(stamp_ns, 1_000_000_000)
    prefix = _SECONDS.get(sec)
    if prefix is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        prefix = _SECONDS[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{ns // 1000:06d}+00:00"


def _recorded(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """A mapping's values in ``RECORDED`` order, ``args`` as canonical JSON text."""
    try:
        values = _pick(entry)
    except KeyError:
        values = tuple(entry.get(k) for k in RECORDED)
    args = values[_ARGS]
    if isinstance(args, str):
        return values  # type: ignore[no-any-return]
    return (*values[:_ARGS], canonical_json(args or {}), *values[_ARGS + 1 :])


def _chain(seq: int, prev: str, queued: list[Any]) -> tuple[list[Any], int, str]:
    """The rows of ``queued`` (``_WIDTH`` values each, ``ts`` first) numbered and linked
    after ``(seq, prev)``: all their columns in one flat list, the last ``seq`` and hash.

    A ``ts`` still a ``time_ns`` stamp is formatted here, in place, so rows put back after
    a failed write keep the same text.
    """
    for i in range(0, len(queued), _WIDTH):
        if type(queued[i]) is int:
            queued[i] = _iso(queued[i])
    out: list[Any] = []
    extend = out.extend
    for i in range(0, len(queued), _WIDTH):
        seq += 1
        row = [seq, *queued[i : i + _WIDTH], prev]
        prev = link(prev, row)
        row.append(prev)
        extend(row)
    return out, seq, prev


def _observe(values: Sequence[Any]) -> None:
    """Count the row's decision (and Close's status) and put them on the span in progress:
    every guard decision and approval decision passes here, whoever made it."""
    if metrics.enabled():
        metrics.record_audit(*_SEEN(values))
    if tracing.active():
        endpoint, decision, rule, approval_id, status = _TRACED(values)
        tracing.current(
            endpoint=endpoint, decision=decision, rule=rule, approval_id=approval_id, status=status
        )


def _storable(value: Any) -> Any:
    """``value`` with any lone surrogate escaped (``\\udxxx``): text that cannot be encoded
    would otherwise keep its whole batch, and every later row, out of the log."""
    if type(value) is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


class AuditStorage(Protocol):
    """Where the chain's rows are kept: ``AuditRows`` on a ``Store``, or the standard-library
    ``Writer`` of a plain SQLite file (``closeguard.store.writer``, the command line's)."""

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What the database raises when it fails (a write is then kept for the next)."""
        ...

    def append(self, queued: list[Any], chain: Chain) -> None: ...

    def head(self) -> tuple[int, str]: ...

    def tail(self, n: int) -> list[dict[str, Any]]: ...

    def get(self, seq: int) -> dict[str, Any] | None: ...

    def rows(
        self, *, chunk: int = 1000, start: int | None = None, stop: int | None = None
    ) -> Iterator[dict[str, Any]]: ...

    def with_decision(self, decision: str) -> list[dict[str, Any]]: ...


class AuditLog:
    """Append-only, batched, hash-chained writes to the store's ``audit`` table.

    ``rows`` instead of a ``store``: keep the rows there (the command line's standard-library
    writer); such a log writes on the caller's thread, ``aflush`` included.
    """

    def __init__(
        self,
        store: Store | None,
        *,
        batch_size: int = 1000,
        max_delay: float = 0.5,
        rows: AuditStorage | None = None,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._buffer: list[Any] = []
        """Queued rows' values, ``_WIDTH`` per row, flat: a row adds no object for the
        garbage collector to track (a full buffer would set off collections of the heap)."""
        self._store_rows: AuditRows | None = None
        if rows is None:
            if store is None:
                raise TypeError("AuditLog needs a store or rows")
            from closeguard.store.audit import AuditRows

            rows = self._store_rows = AuditRows(store)
        self._rows: AuditStorage = rows
        self._oldest = 0
        self._taken: list[Any] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        _live.add(self)

    # -- writing ---------------------------------------------------------------------------

    def append(self, entry: Mapping[str, Any], *, flush: bool = False) -> None:
        """Queue one row and write the batch when it is due (see ``queue``); blocks while
        it writes, so async code uses ``queue`` and ``aflush`` instead."""
        if self.queue(entry) or flush:
            self.flush()

    def queue(self, entry: Mapping[str, Any]) -> bool:
        """Queue one row (fields as in ``CHAINED`` minus seq/prev_hash; ``args`` any JSON);
        True when the batch is due to be written (full, or its oldest row ``max_delay`` old).

        The row's values are picked here, while ``entry`` is fresh, so the buffer keeps
        plain values rather than the callers' dicts; hashing and the insert happen in
        ``flush``, which needs the head of the chain.
        """
        return self.record(_recorded(entry), entry.get("ts") or None)

    def record(self, values: Sequence[Any], ts: str | None = None) -> bool:
        """``queue`` for a row already in ``RECORDED`` order with ``args`` as JSON text (the
        guard's hot path builds it so); ``ts`` defaults to now. True when the batch is due.
        """
        _observe(values)
        now = time.time_ns()
        with self._lock:
            buffer = self._buffer
            if not buffer:
                self._oldest = now
            buffer.append(ts or now)
            buffer.extend(values)
            return (
                len(buffer) >= self.batch_size * _WIDTH
                or now - self._oldest >= self.max_delay * 1e9
            )

    async def aflush(self) -> int:
        """``flush`` on the store's worker thread: the event loop keeps running meanwhile.

        Returns once every row queued before the call is committed, whoever wrote it.
        """
        if self.store is None:
            return self.flush()
        return await self.store.run(self.flush)

    def flush(self) -> int:
        """Write the buffered rows in one transaction; returns how many were written.

        On SQLite the store runs in WAL mode with ``synchronous=NORMAL``: a commit appends
        to the write-ahead log without waiting for fsync, so a committed row survives a
        crash of the process (the OS holds it), and only a power loss or OS crash can undo
        the last commits, never corrupt the chain. PostgreSQL commits with its own
        durability settings.
        """
        with self._writing:
            return self._write()

    def _write(self) -> int:
        """Write the buffer; under ``_writing``, so a flush that finds the buffer empty
        returns only after the flush that took its rows has committed them."""
        with self._lock:
            queued, self._buffer = self._buffer, []
        if not queued:
            return 0
        try:
            try:
                self._rows.append(queued, _chain)
            except UnicodeError:
                queued = [_storable(v) for v in queued]
                self._rows.append(queued, _chain)
            metrics.record_audit_written(len(queued) // _WIDTH)
        except Exception as exc:
            with self._lock:
                self._buffer[:0] = queued
            if isinstance(exc, self._rows.errors):
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                where = self._rows if self.store is None else self.store
                raise StoreError(
                    f"cannot write the audit log to {where!r}: {reason} "
                    f"({len(queued) // _WIDTH} rows kept for the next flush)"
                ) from exc
            raise
        return len(queued) // _WIDTH

    def write_in(self, conn: Connection) -> int:
        """Write the buffered rows in ``conn``'s transaction (with other store work: one
        commit for all); how many. Once it committed, call ``committed``; if it failed,
        ``restore``."""
        rows = self._store_rows
        if rows is None:
            raise TypeError("write_in needs a log on a Store")
        with self._lock:
            queued, self._buffer = self._buffer, []
        if queued:
            self._taken = queued
            rows.append_in(conn, [_storable(v) for v in queued], _chain)
        return len(queued) // _WIDTH

    def committed(self) -> None:
        """The transaction of ``write_in`` committed: its rows count as written."""
        taken, self._taken = self._taken, []
        if taken:
            metrics.record_audit_written(len(taken) // _WIDTH)

    def restore(self) -> None:
        """Put back the rows of a ``write_in`` whose transaction failed."""
        taken, self._taken = self._taken, []
        with self._lock:
            self._buffer[:0] = taken

    def close(self) -> None:
        self.flush()
        _live.discard(self)

    def anchor(self, through_seq: int, through_hash: str, details: Mapping[str, Any]) -> int:
        """Append an anchor row saying the rows up to ``through_seq`` (whose hash is
        ``through_hash``) are archived, chained after the current head in one transaction
        with every other writer; its ``seq``. ``details`` (the archive's name, digest, row
        count) go into its ``args`` as well."""
        args = {**details, "through_seq": through_seq, "through_hash": through_hash}
        entry = {
            **EMPTY_ROW,
            "actor": ANCHOR_ACTOR,
            "method": "PRUNE",
            "path": "audit",
            "decision": ANCHOR,
            "reason": f"rows up to seq {through_seq} archived, then removed from the store",
            "args": args,
        }
        written: list[int] = []

        def chain(seq: int, prev: str, queued: list[Any]) -> tuple[list[Any], int, str]:
            out = _chain(seq, prev, queued)
            written.append(out[1])
            return out

        self.flush()
        with self._writing:
            self._rows.append([_iso(time.time_ns()), *_recorded(entry)], chain)
        return written[-1]

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row written: a checkpoint to keep elsewhere."""
        return self._rows.head()

    def tail(self, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` rows, oldest first."""
        return self._rows.tail(n)

    def get(self, seq: int) -> dict[str, Any] | None:
        return self._rows.get(seq)

    def rows(
        self, *, chunk: int = 1000, start: int | None = None, stop: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every row in ``seq`` order (from ``start`` to ``stop`` when given), in chunks."""
        return self._rows.rows(chunk=chunk, start=start, stop=stop)

    def anchors(self) -> list[dict[str, Any]]:
        """The anchor rows still in the store, oldest first."""
        return self._rows.with_decision(ANCHOR)

    def verify(self, *, expect_head: tuple[int, str] | None = None) -> VerifyReport:
        """Walk the chain (``chain.verify``); every problem names the ``seq`` where it shows."""
        return verify(self, expect_head=expect_head)


@atexit.register
def _flush_all() -> None:
    for log in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit: nowhere left to report
            log.flush()
