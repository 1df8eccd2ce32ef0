"""``closeguard audit``: read, verify and export the hash-chained audit log (never create it)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import (
    JsonOpt,
    LimitOpt,
    OutOpt,
    existing_store,
    fail,
    print_json,
    shown,
    store_reader,
)

if TYPE_CHECKING:
    from closeguard.guardrails.audit import AuditLog
    from closeguard.store.reader import AuditReader

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["audit"].help, no_args_is_help=True)

DECISION_STYLE = {
    "allow": "green",
    "approved": "green",
    "dry_run": "cyan",
    "deny": "red",
    "approval_required": "yellow",
    "anchor": "magenta",
}
COLUMNS = (
    "seq",
    "time",
    "actor",
    "run",
    "endpoint",
    "method",
    "path",
    "access",
    "decision",
    "rule",
    "status",
    "ms",
)


def _log() -> AuditLog:
    from closeguard.guardrails.audit import AuditLog

    return AuditLog(existing_store())


@contextlib.contextmanager
def _reading() -> Iterator[AuditLog | AuditReader]:
    """The log to read: the store on the standard library when it can be (a SQLite file at
    the newest schema: no SQLAlchemy import), every query in one snapshot; else ``_log()``."""
    reader = store_reader()
    if reader is None:
        yield _log()
        return
    with reader, reader.snapshot():
        yield reader.audit


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    with contextlib.suppress(TypeError, ValueError):
        out["args"] = json.loads(out["args"])
    return out


def _cells(r: dict[str, Any]) -> list[str]:
    from closeguard.cli._table import styled

    return [
        str(r["seq"]),
        r["ts"][11:23],
        shown(r["actor"]),
        shown(r["run_id"]),
        shown(r["endpoint"]),
        r["method"],
        r["path"],
        shown(r["access"]),
        styled(r["decision"], DECISION_STYLE.get(r["decision"])),
        shown(r["rule"]),
        shown(r["status_code"] or r["error"]),
        f"{(r['latency_us'] or 0) / 1000:.1f}",
    ]


@app.command("tail")
def tail(limit: LimitOpt = 20, as_json: JsonOpt = False) -> None:
    """The last N rows, oldest first."""
    with _reading() as log:
        rows = log.tail(limit)
    if as_json:
        print_json([_plain(row) for row in rows])
        return
    if not rows:
        typer.echo("no audit rows yet: guarded calls write them")
        return
    from closeguard.cli._table import Table

    table = Table(title=f"Audit log (last {len(rows)})")
    for col in COLUMNS:
        table.add_column(col, wrap=col not in ("endpoint", "path", "rule"))
    for r in rows:
        table.add_row(*_cells(r))
    table.print()


@app.command("show")
def show(
    seq: Annotated[int, typer.Argument(metavar="SEQ", help="The row's sequence number.")],
    as_json: JsonOpt = False,
) -> None:
    """One row, every column."""
    with _reading() as log:
        row = log.get(seq)
    if row is None:
        raise fail(f"no audit row {seq}")
    data = _plain(row)
    if as_json:
        print_json(data)
        return
    from closeguard.cli._table import Table

    table = Table(show_header=False, title=f"Audit row {seq}")
    table.add_column("field", bold=True)
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, shown(value))
    table.print()


@app.command("verify")
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="SEQ:HASH",
            help="A checkpoint kept elsewhere (printed by: closeguard audit head).",
        ),
    ] = None,
    archive: Annotated[
        list[Path] | None,
        typer.Option(
            "--archive",
            metavar="FILE",
            help="Prove archive files written by closeguard store prune instead (repeat "
            "for several, oldest first): their chain and their link to the store's anchor.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain; exit 1 and say where if any row was changed, removed or added.

    After a prune the chain starts after an anchor row that records the last
    archived row; --archive FILE proves the archived rows themselves."""
    if archive:
        _verify_archive(archive, as_json)
        return
    checkpoint = None
    if expect_head:
        seq_text, _, digest = expect_head.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            raise fail("--expect-head takes SEQ:HASH (64 hex digits)", 2)
        checkpoint = (int(seq_text), digest)
    from closeguard.guardrails.chain import verify as verify_chain

    with _reading() as log:
        report = verify_chain(log, expect_head=checkpoint)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "rows": report.rows,
                "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "problems": [p.__dict__ for p in report.problems],
                "first_seq": report.first_seq,
                "anchor": report.anchor,
                "notes": list(report.notes),
            }
        )
    elif report.ok:
        after = (
            f" from seq {report.first_seq} (earlier rows archived, anchor row {report.anchor})"
            if report.first_seq > 1
            else ""
        )
        typer.echo(
            f"ok: {report.rows} rows{after}, chain intact, "
            f"head {report.head_seq}:{report.head_hash}"
        )
        for note in report.notes:
            typer.echo(f"  note: {note}")
    else:
        typer.echo(f"FAILED: {len(report.problems)} problem(s) in {report.rows} rows")
        for p in report.problems:
            where = f"seq {p.seq}" if p.seq is not None else "tail"
            typer.echo(f"  {where}: [{p.kind}] {p.message}")
    if not report.ok:
        raise typer.Exit(1)


def _verify_archive(files: list[Path], as_json: bool) -> None:
    from closeguard.guardrails.archive import verify_archive
    from closeguard.store import store_problem
    from closeguard.tools.settings import store_url

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise fail(f"no archive file {', '.join(missing)}", 2)
    log = None if store_problem(store_url()) else _log()
    try:
        report = verify_archive(files, log)
    except OSError as exc:
        raise fail(f"cannot read the archive: {exc.strerror or exc}") from None
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "rows": report.rows,
                "first_seq": report.first,
                "last_seq": report.last,
                "last_hash": report.last_hash,
                "linked": report.linked,
                "problems": [p.__dict__ for p in report.problems],
                "notes": list(report.notes),
            }
        )
    elif report.ok:
        link = f", linked to the store by {report.linked}" if report.linked else ""
        typer.echo(
            f"ok: archive of {report.rows} rows (seq {report.first}-{report.last}), "
            f"chain intact{link}"
        )
        for note in report.notes:
            typer.echo(f"  note: {note}")
    else:
        typer.echo(f"FAILED: {len(report.problems)} problem(s) in the archive")
        for p in report.problems[:20]:
            where = f"seq {p.seq}" if p.seq is not None else "file"
            typer.echo(f"  {where}: [{p.kind}] {p.message}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("head")
def head() -> None:
    """Print the checkpoint SEQ:HASH to keep outside the database."""
    with _reading() as log:
        seq, digest = log.head()
    typer.echo(f"{seq}:{digest}")


@app.command("export")
def export(
    fmt: Annotated[
        str,
        typer.Option(
            "--format", metavar="FORMAT", help="jsonl: one JSON row a line (the only format)."
        ),
    ] = "jsonl",
    out: OutOpt = None,
) -> None:
    """Every row in seq order, hashes included (re-verifiable offline)."""
    if fmt.lower() != "jsonl":
        raise fail(f"--format must be jsonl, not {fmt!r}", 2)
    with _reading() as log:
        try:
            stream = out.open("w", encoding="utf-8") if out else sys.stdout
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc.strerror or exc}") from None
        count = 0
        try:
            for row in log.rows():
                stream.write(json.dumps(row, sort_keys=True) + "\n")
                count += 1
        finally:
            if out:
                stream.close()
    if out:
        typer.echo(f"wrote {count} rows to {out}")
