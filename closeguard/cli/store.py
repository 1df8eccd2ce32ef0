"""``closeguard store backup`` and ``closeguard store prune``.

``prune`` keeps the store bounded: finished runs, their journal and checkpoints, old inbox
rows, and audit rows (archived to a file first, behind an anchor row) go; see
``closeguard.workflows.retention``.

``backup``: a consistent copy of the SQLite store while it is in use.

Copying ``store.db`` with ``cp`` while ``closeguard run`` writes to it can tear a page
or miss the WAL; sqlite3's online backup copies a consistent snapshot, page by page,
without stopping the writers. The checkpoint file beside the store is copied the same
way. A run in flight at the time is re-run from its checkpoint after a restore, and its
effect journal (in the store) keeps what it already wrote from being written again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import make_url

from closeguard.agent.runtime import checkpoint_path
from closeguard.cli._app import COMMANDS
from closeguard.cli._common import JsonOpt, existing_store, fail, print_json
from closeguard.guardrails import AuditLog
from closeguard.store import Store
from closeguard.tools.errors import ConfigError
from closeguard.tools.settings import Settings
from closeguard.workflows.retention import parse_age, parse_before
from closeguard.workflows.retention import prune as prune_store

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["store"].help, no_args_is_help=True)


def _copy(source: Path, target: Path) -> dict[str, Any]:
    """sqlite3's online backup of ``source`` into ``target``, then its integrity check."""
    with (
        contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst, pages=256)
        [[check]] = dst.execute("PRAGMA integrity_check").fetchall()
    return {"file": str(target), "bytes": target.stat().st_size, "integrity": check}


@app.command("backup")
def backup(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="A new or empty folder for store.db and checkpoints.db."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Copy the SQLite store and its checkpoints into DIR while they are in use, then
    check the copies and verify the copy's audit chain. Restore by pointing
    CLOSEGUARD_STORE_URL at DIR/store.db (or by copying both files back while closeguard is
    stopped). On PostgreSQL use pg_dump instead."""
    if make_url(Settings().store_url).get_backend_name() != "sqlite":
        raise fail("the store is on PostgreSQL: back it up with pg_dump (a consistent snapshot)")
    store = existing_store()
    source = Path(str(store.url.database)).expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise fail(f"{folder} is not an empty folder: nothing was copied")
    folder.mkdir(parents=True, exist_ok=True)
    copies = [_copy(source, folder / "store.db")]
    checkpoints = checkpoint_path(str(store.url))
    if checkpoints.exists():
        copies.append(_copy(checkpoints, folder / "checkpoints.db"))
    copy = Store(f"sqlite:///{folder / 'store.db'}", create=False)
    try:
        report = AuditLog(copy).verify()
    finally:
        copy.dispose()
    bad = [c for c in copies if c["integrity"] != "ok"]
    result = {"copies": copies, "audit_rows": report.rows, "audit_ok": report.ok}
    if json_out:
        print_json(result)
    else:
        for c in copies:
            typer.echo(f"{c['file']}: {c['bytes']:,} bytes, integrity {c['integrity']}")
        verdict = "verifies" if report.ok else "does NOT verify"
        typer.echo(f"audit chain: {report.rows:,} rows, {verdict}")
    if bad or not report.ok:
        raise typer.Exit(1)


class _Bar:
    """A rich progress bar on stderr, one task per stage of the prune."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task: Any = None

    def stage(self, name: str, total: int | None) -> None:
        self.task = self.progress.add_task(name, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


@contextlib.contextmanager
def _progress_bar() -> Any:
    """A progress bar on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        yield _Bar(progress)


def _cutoff(before: str | None, older_than: str | None) -> datetime:
    if (before is None) == (older_than is None):
        raise fail("give either --before DATE or --older-than AGE (e.g. 90d)", 2)
    try:
        if before is not None:
            return parse_before(before)
        return datetime.now(UTC) - parse_age(str(older_than))
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


@app.command("prune")
def prune(
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="DATE",
            help="Prune what finished before DATE (YYYY-MM-DD, UTC, or an ISO time).",
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Prune what finished more than AGE ago: 90d, 12h, 2w.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            metavar="DIR",
            help="Where pruned audit rows are written (default: archive/ beside a SQLite "
            "store, else in the data dir).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove finished runs (with their journal and checkpoints), inbox rows past the
    30-day dedup window and audit rows from before the cutoff. Audit rows are first
    written to DIR/audit-FIRST-LAST.jsonl, then an anchor row in the chain records the last
    one, so closeguard audit verify still proves the rest and closeguard audit verify
    --archive FILE proves the file. Unfinished runs and open approvals (and their audit
    rows) are never touched. Safe while workers run; no prompt."""
    cutoff = _cutoff(before, older_than)
    store = existing_store()
    with _progress_bar() as bar:
        report = prune_store(store, cutoff, archive_dir=archive, dry_run=dry_run, progress=bar)
    if json_out:
        print_json(report.as_dict())
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"cutoff {report.before}: {verb}")
    typer.echo(
        f"  runs     {report.runs:>9,}  finished runs "
        f"({report.effects:,} journal entries, {report.checkpoint_threads:,} checkpoint threads)"
    )
    typer.echo(f"  inbox    {report.inbox:>9,}  dispatched events past the 30-day dedup window")
    span = f"seq {report.audit_first}-{report.audit_last}" if report.audit_rows else "none to prune"
    typer.echo(f"  audit    {report.audit_rows:>9,}  rows ({span})")
    if report.audit_held_by:
        typer.echo(f"  audit rows from there on are kept: {report.audit_held_by}")
    if report.archive and report.audit_rows:
        where = "would be archived to" if dry_run else "archived to"
        typer.echo(f"audit rows {where} {report.archive}")
    if report.anchor is not None:
        typer.echo(f"anchor row {report.anchor} records seq {report.audit_last} and its hash")
    if not dry_run:
        typer.echo(f"took {report.seconds:.1f} s")
