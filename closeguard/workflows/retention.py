"""Retention: ``closeguard store prune`` and ``closeguard run --retain``.

``prune(store, before)`` removes, in short batches that workers running beside it never
wait long for: finished runs last updated before ``before`` with their journal entries,
procrastinate jobs and LangGraph checkpoint threads (the run's own thread, and a rule's
agent-step threads, ``<rule>/<event id|tick|run id>/<step>``); dispatched inbox rows past
the dedup window; and the audit rows before ``before`` (``store.retention`` says which may
go), which are first written to an archive file (``guardrails.archive``), then vouched for
by an anchor row appended to the chain, then deleted. Unfinished runs, their rows and open
approvals are never touched. One prune at a time per store (a PostgreSQL advisory lock,
or a lock file beside a SQLite store); a second one fails at once rather than wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy import text

from closeguard.agent.runtime import checkpoint_path, data_dir
from closeguard.guardrails.archive import archive_name, write_archive
from closeguard.guardrails.audit import AuditLog
from closeguard.store import Store
from closeguard.store.audit import AuditRows
from closeguard.store.retention import FinishedRun, RetentionRows
from closeguard.tools.errors import ConfigError, StoreError

__all__ = [
    "Progress",
    "PruneReport",
    "default_archive_dir",
    "parse_age",
    "parse_before",
    "prune",
]

RUN_BATCH = 200
ROW_BATCH = 20_000
"""Rows per delete transaction: a few tens of milliseconds, so writers barely wait."""
_AGE = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}


class Progress(Protocol):
    """Told what a prune is doing: ``stage`` starts a step (``total`` if known)."""

    def stage(self, name: str, total: int | None) -> None: ...

    def advance(self, n: int) -> None: ...


class _Quiet:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class PruneReport:
    """What a prune removed (or, with ``dry_run``, would remove)."""

    before: str
    dry_run: bool
    runs: int = 0
    effects: int = 0
    checkpoint_threads: int = 0
    inbox: int = 0
    audit_rows: int = 0
    audit_first: int | None = None
    audit_last: int | None = None
    audit_held_by: str | None = None
    archive: str | None = None
    anchor: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_age(value: str) -> timedelta:
    """``90d``, ``12h``, ``2w`` as a ``timedelta``; ``ConfigError`` otherwise."""
    match = _AGE.match(value)
    if not match or int(match[1]) == 0:
        raise ConfigError(f"an age is a number and d, h or w (90d, 12h, 2w), not {value!r}")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def parse_before(value: str) -> datetime:
    """A date (``2026-09-01``, midnight UTC) or an ISO time (UTC unless it says a zone)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"a date is YYYY-MM-DD or an ISO time (2026-09-01T12:00:00Z), not {value!r}"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def default_archive_dir(store: Store) -> Path:
    """``archive/`` beside a SQLite store, else in closeguard's data dir."""
    return data_dir(store.url.render_as_string(hide_password=False)) / "archive"


def prune(
    store: Store,
    before: datetime,
    *,
    archive_dir: Path | None = None,
    checkpoints: Path | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: float | None = None,
) -> PruneReport:
    """Remove what finished before ``before`` (see the module); with ``dry_run`` only
    count it. ``checkpoints``: the SQLite checkpoint file (default: beside the store)."""
    started = time.perf_counter()
    shown = progress or _Quiet()
    rows = RetentionRows(store)
    cutoff = before.astimezone(UTC)
    stamp = cutoff.timestamp()
    clock = now if now is not None else time.time()
    report = PruneReport(cutoff.isoformat(), dry_run)
    with _exclusive(store), _Checkpoints.open(store, checkpoints) as threads:
        _prune_runs(rows, threads, stamp, report, shown)
        _prune_inbox(rows, stamp, clock, report, shown)
        _prune_audit(store, rows, cutoff, clock, archive_dir, report, shown)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _prune_runs(
    rows: RetentionRows,
    threads: _Checkpoints,
    before: float,
    report: PruneReport,
    shown: Progress,
) -> None:
    """Batch by batch: the runs (still finished) go first, then the checkpoint threads of
    those that went, so a run retried meanwhile keeps its checkpoints; a crash in between
    leaves only threads nothing will read."""
    total, effects = rows.count_runs(before)
    shown.stage("runs", total)
    after = 0
    while batch := rows.finished_runs(before, after, RUN_BATCH):
        after = batch[-1].seq
        if report.dry_run:
            report.runs += len(batch)
            report.checkpoint_threads += len(threads.find(batch))
        else:
            gone, journal = rows.delete_runs([r.id for r in batch], before)
            removed = set(gone)
            found = threads.find([r for r in batch if r.id in removed])
            threads.delete(found)
            report.runs += len(gone)
            report.effects += journal
            report.checkpoint_threads += len(found)
        shown.advance(len(batch))
    if report.dry_run:
        report.effects = effects


def _prune_inbox(
    rows: RetentionRows, before: float, now: float, report: PruneReport, shown: Progress
) -> None:
    total = rows.count_inbox(before, now)
    shown.stage("inbox", total)
    if report.dry_run:
        report.inbox = total
        return
    while gone := rows.delete_inbox(before, ROW_BATCH, now):
        report.inbox += gone
        shown.advance(gone)


def _prune_audit(
    store: Store,
    rows: RetentionRows,
    cutoff: datetime,
    now: float,
    archive_dir: Path | None,
    report: PruneReport,
    shown: Progress,
) -> None:
    first, last, held_by = rows.audit_span(cutoff.isoformat(timespec="microseconds"), now)
    report.audit_held_by = held_by
    if last < first:
        return
    report.audit_first, report.audit_last = first, last
    report.audit_rows = last - first + 1
    folder = archive_dir or default_archive_dir(store)
    report.archive = str(folder / archive_name(first, last))
    if report.dry_run:
        return
    log = AuditLog(store)
    shown.stage("audit archive", report.audit_rows)
    archive = write_archive(
        AuditRows(store).batches(first, last),
        folder,
        first,
        last,
        progress=shown.advance,
    )
    report.archive = str(archive.path)
    report.anchor = log.anchor(
        last,
        archive.last_hash,
        {"archive": archive.path.name, "sha256": archive.sha256, "first_seq": first},
    )
    shown.stage("audit delete", report.audit_rows)
    for low in range(first, last + 1, ROW_BATCH):
        shown.advance(rows.delete_audit(low, min(low + ROW_BATCH - 1, last)))


@contextlib.contextmanager
def _exclusive(store: Store) -> Iterator[None]:
    """One prune at a time on ``store``; ``StoreError`` if another holds it."""
    if store.dialect == "postgresql":
        key = zlib.crc32(f"closeguard-prune:{store.schema or ''}".encode())
        with store.engine.connect() as conn:
            held = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()  # the lock is the session's: no transaction stays open meanwhile
            if not held:
                raise StoreError("another prune of this store is running: try again later")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = store.url.database
    if database in (None, "", ":memory:"):
        yield
        return
    lock = Path(str(database)).expanduser().with_suffix(".prune-lock")
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError("another prune of this store is running: try again later") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Checkpoints:
    """The finished runs' LangGraph threads: found by id (and rule-step prefix) in the
    ``checkpoints`` table, deleted by the saver itself (``prune`` on PostgreSQL, one
    ``delete_thread`` each on SQLite), so every table of the saver is covered."""

    def __init__(self, saver: BaseCheckpointSaver[Any] | None, execute: Any) -> None:
        self.saver = saver
        self._execute = execute

    @classmethod
    @contextlib.contextmanager
    def open(cls, store: Store, path: Path | None) -> Iterator[_Checkpoints]:
        if store.dialect == "postgresql":
            with cls._postgres(store) as found:
                yield found
            return
        target = path or checkpoint_path(store.url.render_as_string(hide_password=False))
        if not target.is_file():
            yield cls(None, None)
            return
        from langgraph.checkpoint.sqlite import SqliteSaver

        with contextlib.closing(sqlite3.connect(str(target), check_same_thread=False)) as conn:
            conn.execute("PRAGMA busy_timeout=10000")

            def execute(sql: str, params: Sequence[str]) -> list[str]:
                return [str(r[0]) for r in conn.execute(sql.replace("%s", "?"), list(params))]

            yield cls(SqliteSaver(conn), execute)

    @classmethod
    @contextlib.contextmanager
    def _postgres(cls, store: Store) -> Iterator[_Checkpoints]:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

        conninfo = store.url.set(drivername="postgresql").render_as_string(hide_password=False)
        path = f"-c search_path={store.schema},public" if store.schema else None
        with psycopg.connect(
            conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row, options=path
        ) as conn:
            here = conn.execute("SELECT to_regclass('checkpoints') AS t").fetchone()
            if not here or here["t"] is None:
                yield cls(None, None)
                return

            def execute(sql: str, params: Sequence[str]) -> list[str]:
                return [str(r["thread_id"]) for r in conn.execute(sql, list(params))]

            yield cls(PostgresSaver(conn), execute)

    def find(self, runs: Sequence[FinishedRun]) -> list[str]:
        """The thread ids these runs left in the checkpointer."""
        if self.saver is None or not runs:
            return []
        ids = [r.id for r in runs]
        prefixes = [_like(f"{r.workflow}/{_trigger(r)}/") + "%" for r in runs]
        marks = ", ".join(["%s"] * len(ids))
        likes = " OR ".join(["thread_id LIKE %s ESCAPE '\\'"] * len(prefixes))
        sql = f"SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id IN ({marks}) OR {likes}"
        return list(self._execute(sql, [*ids, *prefixes]))

    def delete(self, threads: Sequence[str]) -> None:
        if self.saver is None or not threads:
            return
        try:
            self.saver.prune(threads, strategy="delete")
        except NotImplementedError:
            for thread in threads:
                self.saver.delete_thread(thread)


def _trigger(run: FinishedRun) -> str:
    """The middle part of a rule's agent-step thread id (``rules.run._thread``)."""
    event = run.payload.get("event")
    if isinstance(event, dict) and event.get("id"):
        return str(event["id"])
    tick = run.payload.get("tick")
    return str(tick) if tick else run.id


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
