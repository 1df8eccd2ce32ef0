"""``closeguard approvals``: list, show, approve and reject pending approvals.

Deciding needs ``--as NAME``: an enabled account holding one of the roles the approval
names. This is the operator's path: the store does not check who runs the command, so the
decision is recorded under NAME together with the OS user who ran it. Whoever can write
the store can act as anyone.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import (
    JsonOpt,
    LimitOpt,
    existing_store,
    fail,
    print_json,
    shown,
    store_reader,
    store_writer,
)

if TYPE_CHECKING:
    from closeguard.guardrails.accounts import Accounts
    from closeguard.guardrails.approval_record import Approval, Status
    from closeguard.guardrails.approvals import Approvals
    from closeguard.store.writer import Writer

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["approvals"].help, no_args_is_help=True)

STATUSES = ("pending", "approved", "rejected", "consumed", "expired")
STATUS_STYLE = {
    "pending": "yellow",
    "approved": "green",
    "rejected": "red",
    "consumed": "dim",
    "expired": "dim",
}
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The approval's id (appr_...).")]
AsOpt = Annotated[
    str,
    typer.Option(
        "--as",
        metavar="NAME",
        help="The account deciding (closeguard users add): it must hold one of the roles "
        "the approval names. Recorded with your OS user name.",
    ),
]
NoteOpt = Annotated[
    str | None, typer.Option("--note", metavar="TEXT", help="Why, kept with the approval.")
]


@contextlib.contextmanager
def _approvals(writer: Writer | None) -> Iterator[tuple[Approvals, Accounts]]:
    """The approvals and accounts of the configured store: on ``writer`` (``store_writer()``,
    given when it could open the store: no SQLAlchemy import, ~0.1 s sooner), else on the
    ``Store``, which migrates an older store or says why there is none."""
    from closeguard.guardrails.accounts import Accounts
    from closeguard.guardrails.approvals import Approvals
    from closeguard.guardrails.audit import AuditLog

    if writer is None:
        store = existing_store()
        yield Approvals(store), Accounts(store)
        return
    with writer:
        audit = AuditLog(None, rows=writer.audit)
        approvals = Approvals(None, rows=writer.approval_rows, audit=audit)
        yield approvals, Accounts(None, rows=writer.users)


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
    reader = store_reader()
    if reader is None:
        with _approvals(None) as (approvals, _):
            found = approvals.get(approval_id)
    else:
        from closeguard.guardrails.approval_record import from_row

        with reader:
            row = reader.approval(approval_id)
        found = None if row is None else from_row(row, time.time())
    if found is None:
        raise fail(f"no approval {approval_id!r}")
    return found


def _listed(status: Status | None, limit: int) -> list[Approval]:
    """``Approvals.list`` after recording the requests nobody answered in time (read only,
    without opening for writes, when there are none)."""
    reader = store_reader()
    if reader is not None:
        from closeguard.guardrails.approval_record import from_row

        now = time.time()
        with reader:
            rows = None if reader.approvals_due(now) else reader.approvals(status, now, limit=limit)
        if rows is not None:
            return [from_row(row, now) for row in rows]
    with _approvals(None if reader is None else store_writer()) as (approvals, _):
        approvals.expire()
        return approvals.list(status, limit=limit)


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
    wanted = None if all_ else cast("Status", status)
    found = _listed(wanted, limit)
    if as_json:
        print_json([_payload(a) for a in found])
        return
    if not found:
        typer.echo("no approvals" if all_ else f"no {status} approvals")
        return
    from closeguard.cli._table import Table, styled

    table = Table(title=f"Approvals ({len(found)})")
    for col in (
        "id",
        "status",
        "endpoint",
        "path",
        "actor",
        "run",
        "who answers",
        "created",
        "expires",
    ):
        table.add_column(col, wrap=col not in ("id", "endpoint"))
    for a in found:
        table.add_row(
            a.id,
            styled(a.status, STATUS_STYLE[a.status]),
            a.endpoint,
            a.path,
            shown(a.actor),
            shown(a.run_id),
            " or ".join(a.approvers),
            _when(a.created),
            _when(a.expires),
        )
    table.print()


@app.command("show")
def show(approval_id: IdArg, as_json: JsonOpt = False) -> None:
    """Everything about one approval, arguments included (redacted)."""
    a = _get(approval_id)
    if as_json:
        print_json(_payload(a))
        return
    from closeguard.cli._table import Table

    table = Table(show_header=False, title=f"Approval {a.id}")
    table.add_column("field", bold=True)
    table.add_column("value")
    for key, value in _payload(a).items():
        table.add_row(key, shown(value))
    table.print()


def _os_user() -> str:
    """The OS account running the command, by its uid where there is one ($USER and
    $LOGNAME, which ``getpass`` reads first, can say anything)."""
    try:
        import pwd  # POSIX only

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        try:
            return getpass.getuser()
        except (OSError, KeyError):
            return "unknown"


def _decide(action: str, approval_id: str, name: str, note: str | None) -> Approval:
    """Decide as the account ``name``, which must exist, be enabled and hold a role."""
    with _approvals(store_writer()) as (approvals, accounts):
        account = accounts.get(name)
        if account is None:
            raise fail(f"no account named {name!r} (closeguard users list)")
        if account.disabled:
            raise fail(f"the account {name!r} is disabled")
        decide = approvals.approve if action == "approve" else approvals.reject
        return decide(
            approval_id,
            by=account.name,
            note=note,
            via="cli",
            channel="cli",
            roles=account.roles,
            detail={"os_user": _os_user()},
        )


@app.command("approve")
def approve(approval_id: IdArg, as_: AsOpt, note: NoteOpt = None) -> None:
    """Grant a pending approval: the exact call may run once before it expires."""
    a = _decide("approve", approval_id, as_, note)
    typer.echo(f"approved {a.id}: {a.method} {a.path} ({a.endpoint}) by {a.decided_by}")


@app.command("reject")
def reject(approval_id: IdArg, as_: AsOpt, note: NoteOpt = None) -> None:
    """Refuse a pending approval."""
    a = _decide("reject", approval_id, as_, note)
    typer.echo(f"rejected {a.id}: {a.method} {a.path} ({a.endpoint}) by {a.decided_by}")
