"""``closeguard approvals``: list, show, approve and reject pending approvals."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from closeguard.guardrails import Approval, ApprovalError, Approvals
from closeguard.store import default_store

app = typer.Typer(help="Human approvals for guarded calls.", no_args_is_help=True)

STATUSES = ("pending", "approved", "rejected", "consumed", "expired")
STATUS_STYLE = {"pending": "yellow", "approved": "green", "rejected": "red",
                "consumed": "dim", "expired": "dim"}
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _approvals() -> Approvals:
    return Approvals(default_store())


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _payload(a: Approval) -> dict[str, Any]:
    data = a.as_dict()
    for key in ("created", "expires", "decided_at", "consumed_at"):
        data[key] = None if data[key] is None else datetime.fromtimestamp(
            data[key], UTC).isoformat()
    return data


def _get(approval_id: str) -> Approval:
    found = _approvals().get(approval_id)
    if found is None:
        typer.echo(f"error: no approval {approval_id!r}", err=True)
        raise typer.Exit(1)
    return found


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(
        "--status", "-s", help=f"Only this status: {', '.join(STATUSES)}.")] = "pending",
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every status.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Approvals, newest first (pending ones unless --status or --all)."""
    if status is not None and status not in STATUSES:
        typer.echo(f"error: --status must be one of {', '.join(STATUSES)}", err=True)
        raise typer.Exit(2)
    found = _approvals().list(None if all_ else status, limit=limit)  # type: ignore[arg-type]
    if as_json:
        typer.echo(json.dumps([_payload(a) for a in found], indent=2))
        return
    table = Table(title=f"Approvals ({len(found)})")
    for col in ("id", "status", "endpoint", "path", "actor", "run", "created", "expires"):
        table.add_column(col, no_wrap=col in ("id", "endpoint"))
    for a in found:
        table.add_row(a.id, f"[{STATUS_STYLE[a.status]}]{a.status}[/]", a.endpoint, a.path,
                      a.actor or "-", a.run_id or "-", _when(a.created), _when(a.expires))
    Console(width=160).print(table)


@app.command("show")
def show(approval_id: str, as_json: JsonOpt = False) -> None:
    """Everything about one approval, arguments included (redacted)."""
    a = _get(approval_id)
    if as_json:
        typer.echo(json.dumps(_payload(a), indent=2))
        return
    table = Table(show_header=False, title=f"Approval {a.id}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in _payload(a).items():
        shown = json.dumps(value, indent=2) if isinstance(value, dict) else str(value)
        table.add_row(key, shown)
    Console(width=160).print(table)


def _who(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


@app.command("approve")
def approve(
    approval_id: str,
    by: Annotated[str | None, typer.Option("--by", help="Who approves (default $USER).")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Grant a pending approval: the exact call may run once before it expires."""
    try:
        a = _approvals().approve(approval_id, by=_who(by), note=note)
    except ApprovalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"approved {a.id}: {a.method} {a.path} ({a.endpoint}) by {a.decided_by}")


@app.command("reject")
def reject(
    approval_id: str,
    by: Annotated[str | None, typer.Option("--by", help="Who rejects (default $USER).")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
) -> None:
    """Refuse a pending approval."""
    try:
        a = _approvals().reject(approval_id, by=_who(by), note=note)
    except ApprovalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"rejected {a.id}: {a.method} {a.path} ({a.endpoint}) by {a.decided_by}")
