"""``closeguard audit``: read, verify and export the hash-chained audit log."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from closeguard.guardrails import AuditLog
from closeguard.store import default_store

app = typer.Typer(help="The hash-chained audit log of every guarded call.", no_args_is_help=True)

DECISION_STYLE = {"allow": "green", "approved": "green", "dry_run": "cyan", "deny": "red",
                  "approval_required": "yellow"}
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON lines.")]


def _log() -> AuditLog:
    return AuditLog(default_store())


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    with contextlib.suppress(TypeError, ValueError):
        out["args"] = json.loads(out["args"])
    return out


@app.command("tail")
def tail(
    n: Annotated[int, typer.Option("-n", "--lines", help="How many rows.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The last N rows, oldest first."""
    rows = _log().tail(n)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(_plain(row)))
        return
    table = Table(title=f"Audit log (last {len(rows)})")
    for col in ("seq", "time", "actor", "run", "endpoint", "method", "path", "access",
                "decision", "rule", "status", "ms"):
        table.add_column(col, no_wrap=col in ("endpoint", "path", "rule"))
    for r in rows:
        style = DECISION_STYLE.get(r["decision"], "white")
        table.add_row(
            str(r["seq"]), r["ts"][11:23], r["actor"] or "-", r["run_id"] or "-",
            r["endpoint"] or "?", r["method"], r["path"], r["access"] or "-",
            f"[{style}]{r['decision']}[/]", r["rule"] or "-",
            str(r["status_code"] or r["error"] or "-"),
            f"{(r['latency_us'] or 0) / 1000:.1f}",
        )
    Console(width=200).print(table)


@app.command("show")
def show(seq: int, as_json: JsonOpt = False) -> None:
    """One row, every column."""
    row = _log().get(seq)
    if row is None:
        typer.echo(f"error: no audit row {seq}", err=True)
        raise typer.Exit(1)
    data = _plain(row)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title=f"Audit row {seq}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, json.dumps(value, indent=2) if isinstance(value, dict) else str(value))
    Console(width=160).print(table)


@app.command("verify")
def verify(
    expect_head: Annotated[str | None, typer.Option(
        "--expect-head", help="A checkpoint SEQ:HASH kept elsewhere (from `audit head`).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the hash chain; exit 1 and say where if any row was changed, removed or added."""
    checkpoint = None
    if expect_head:
        seq_text, _, digest = expect_head.partition(":")
        if not seq_text.isdigit() or len(digest) != 64:
            typer.echo("error: --expect-head takes SEQ:HASH (64 hex digits)", err=True)
            raise typer.Exit(2)
        checkpoint = (int(seq_text), digest)
    report = _log().verify(expect_head=checkpoint)
    if as_json:
        typer.echo(json.dumps({
            "ok": report.ok, "rows": report.rows, "head_seq": report.head_seq,
            "head_hash": report.head_hash,
            "problems": [p.__dict__ for p in report.problems],
        }, indent=2))
    elif report.ok:
        typer.echo(f"ok: {report.rows} rows, chain intact, head {report.head_seq}:"
                   f"{report.head_hash}")
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
    fmt: Annotated[str, typer.Option("--format", help="Only jsonl for now.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File (default stdout).")]
    = None,
) -> None:
    """Every row as JSON lines, in seq order, hashes included (re-verifiable offline)."""
    if fmt != "jsonl":
        typer.echo("error: --format must be jsonl", err=True)
        raise typer.Exit(2)
    log = _log()
    stream = out.open("w", encoding="utf-8") if out else sys.stdout
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
