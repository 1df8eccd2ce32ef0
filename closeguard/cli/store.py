"""``closeguard store backup``: a consistent copy of the SQLite store while it is in use.

Copying ``store.db`` with ``cp`` while ``closeguard run`` writes to it can tear a page
or miss the WAL; sqlite3's online backup copies a consistent snapshot, page by page,
without stopping the writers. The checkpoint file beside the store is copied the same
way. A run in flight at the time is re-run from its checkpoint after a restore, and its
effect journal (in the store) keeps what it already wrote from being written again.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import make_url

from closeguard.agent.runtime import checkpoint_path
from closeguard.cli._common import JsonOpt, existing_store, fail, print_json
from closeguard.guardrails import AuditLog
from closeguard.store import Store
from closeguard.tools.settings import Settings

app = typer.Typer(help="The store: back it up while in use.", no_args_is_help=True)


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
