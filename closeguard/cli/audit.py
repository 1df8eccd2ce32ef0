"""``closeguard audit``: read, verify and export the hash-chained audit log (never create it)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from closeguard.cli._common import (
    JsonOpt,
    LimitOpt,
    OutOpt,
    console,
    existing_store,
    fail,
    print_json,
    shown,
)

if TYPE_CHECKING:
    from closeguard.guardrails.audit import AuditLog

app = typer.Typer(help="The hash-chained audit log of every guarded call.", no_args_is_help=True)

DECISION_STYLE = {
    "allow": "green",
    "approved": "green",
    "dry_run": "cyan",
    "deny": "red",
    "approval_required": "yellow",
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


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    with contextlib.suppress(TypeError, ValueError):
        out["args"] = json.loads(out["args"])
    return out


def _cells(r: dict[str, Any]) -> list[str]:
    style = DECISION_STYLE.get(r["decision"], "white")
    return [
        str(r["seq"]),
        r["ts"][11:23],
        shown(r["actor"]),
        shown(r["run_id"]),
        shown(r["endpoint"]),
        r["method"],
        r["path"],
        shown(r["access"]),
        f"[{style}]{r['decision']}[/]",
        shown(r["rule"]),
        shown(r["status_code"] or r["error"]),
        f"{(r['latency_us'] or 0) / 1000:.1f}",
    ]


@app.command("tail")
def tail(limit: LimitOpt = 20, as_json: JsonOpt = False) -> None:
    """The last N rows, oldest first."""
    rows = _log().tail(limit)
    if as_json:
        print_json([_plain(row) for row in rows])
        return
    if not rows:
        typer.echo("no audit rows yet: guarded calls write them")
        return
    from rich.table import Table

    table = Table(title=f"Audit log (last {len(rows)})")
    for col in COLUMNS:
        table.add_column(col, no_wrap=col in ("endpoint", "path", "rule"))
    for r in rows:
        table.add_row(*_cells(r))
    console(200).print(table)


@app.command("show")
def show(
    seq: Annotated[int, typer.Argument(metavar="SEQ", help="The row's sequence number.")],
    as_json: JsonOpt = False,
) -> None:
    """One row, every column."""
    row = _log().get(seq)
    if row is None:
        raise fail(f"no audit row {seq}")
    data = _plain(row)
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(show_header=False, title=f"Audit row {seq}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, shown(value))
    console(160).print(table)


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
    as_json: JsonOpt = False,
) -> None:
    """Check the hash chain; exit 1 and say where if any row was changed, removed or added."""
    checkpoint = None
    if expect_head:
        seq_text, _, digest = expect_head.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            raise fail("--expect-head takes SEQ:HASH (64 hex digits)", 2)
        checkpoint = (int(seq_text), digest)
    report = _log().verify(expect_head=checkpoint)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "rows": report.rows,
                "head_seq": report.head_seq,
                "head_hash": report.head_hash,
                "problems": [p.__dict__ for p in report.problems],
            }
        )
    elif report.ok:
        typer.echo(
            f"ok: {report.rows} rows, chain intact, head {report.head_seq}:{report.head_hash}"
        )
    else:
        typer.echo(f"FAILED: {len(report.problems)} problem(s) in {report.rows} rows")
        for p in report.problems:
            where = f"seq {p.seq}" if p.seq is not None else "tail"
            typer.echo(f"  {where}: [{p.kind}] {p.message}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("head")
def head() -> None:
    """Print the checkpoint SEQ:HASH to keep outside the database."""
    seq, digest = _log().head()
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
    log = _log()
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
