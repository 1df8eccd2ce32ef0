"""``closeguard approvals``: list, show, approve and reject pending approvals."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from closeguard.cli._common import (
    JsonOpt,
    LimitOpt,
    console,
    existing_store,
    fail,
    print_json,
    shown,
)
from closeguard.guardrails import Approval, Approvals
from closeguard.guardrails.approvals import Status

app = typer.Typer(help="Human approvals for guarded calls.", no_args_is_help=True)

STATUSES = ("pending", "approved", "rejected", "consumed", "expired")
STATUS_STYLE = {
    "pending": "yellow",
    "approved": "green",
    "rejected": "red",
    "consumed": "dim",
    "expired": "dim",
}
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The approval's id (appr_...).")]
ByOpt = Annotated[
    str | None, typer.Option("--by", metavar="NAME", help="Who decides (default: $USER).")
]
NoteOpt = Annotated[
    str | None, typer.Option("--note", metavar="TEXT", help="Why, kept with the approval.")
]


def _approvals() -> Approvals:
    return Approvals(existing_store())


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _payload(a: Approval) -> dict[str, Any]:
    data = a.as_dict()
    for key in ("created", "expires", "decided_at", "consumed_at"):
        data[key] = (
            None if data[key] is None else datetime.fromtimestamp(data[key], UTC).isoformat()
        )
    return data


def _get(approval_id: str) -> Approval:
    found = _approvals().get(approval_id)
    if found is None:
        raise fail(f"no approval {approval_id!r}")
    return found


@app.command("list")
def list_(
    status: Annotated[
        str,
        typer.Option(
            "--status", "-s", metavar="STATUS", help=f"Only this status: {', '.join(STATUSES)}."
        ),
    ] = "pending",
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every status.")] = False,
    limit: LimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Approvals, newest first (pending ones unless --status or --all)."""
    status = status.lower()
    if status not in STATUSES:
        raise fail(f"--status must be one of {', '.join(STATUSES)}, not {status!r}", 2)
    found = _approvals().list(None if all_ else cast(Status, status), limit=limit)
    if as_json:
        print_json([_payload(a) for a in found])
        return
    if not found:
        typer.echo("no approvals" if all_ else f"no {status} approvals")
        return
    table = Table(title=f"Approvals ({len(found)})")
    for col in ("id", "status", "endpoint", "path", "actor", "run", "created", "expires"):
        table.add_column(col, no_wrap=col in ("id", "endpoint"))
    for a in found:
        table.add_row(
            a.id,
            f"[{STATUS_STYLE[a.status]}]{a.status}[/]",
            a.endpoint,
            a.path,
            shown(a.actor),
            shown(a.run_id),
            _when(a.created),
            _when(a.expires),
        )
    console(160).print(table)


@app.command("show")
def show(approval_id: IdArg, as_json: JsonOpt = False) -> None:
    """Everything about one approval, arguments included (redacted)."""
    a = _get(approval_id)
    if as_json:
        print_json(_payload(a))
        return
    table = Table(show_header=False, title=f"Approval {a.id}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in _payload(a).items():
        table.add_row(key, shown(value))
    console(160).print(table)


def _who(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


@app.command("approve")
def approve(approval_id: IdArg, by: ByOpt = None, note: NoteOpt = None) -> None:
    """Grant a pending approval: the exact call may run once before it expires."""
    a = _approvals().approve(approval_id, by=_who(by), note=note)
    typer.echo(f"approved {a.id}: {a.method} {a.path} ({a.endpoint}) by {a.decided_by}")


@app.command("reject")
def reject(approval_id: IdArg, by: ByOpt = None, note: NoteOpt = None) -> None:
    """Refuse a pending approval."""
    a = _approvals().reject(approval_id, by=_who(by), note=note)
    typer.echo(f"rejected {a.id}: {a.method} {a.path} ({a.endpoint}) by {a.decided_by}")
