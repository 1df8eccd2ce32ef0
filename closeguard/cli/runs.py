"""``closeguard runs``: list, show and retry workflow runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import (
    JsonOpt,
    LimitOpt,
    existing_store,
    fail,
    print_json,
    store_reader,
    store_writer,
)

if TYPE_CHECKING:
    from closeguard.store import Store
    from closeguard.store.reader import Reader
    from closeguard.store.records import RunRow

__all__ = ["app", "audit_rows_for"]

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["runs"].help, no_args_is_help=True)

STATUSES = (
    "queued",
    "running",
    "waiting_approval",
    "completed",
    "failed",
    "rejected",
    "dead",
    "skipped",
)
STATUS_STYLE = {
    "completed": "green",
    "waiting_approval": "yellow",
    "queued": "cyan",
    "running": "cyan",
    "failed": "red",
    "dead": "red",
    "rejected": "magenta",
    "skipped": "dim",
}
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The run's id (run_..., or a prefix).")]


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _event_lead(run: RunRow) -> str | None:
    event = run.payload.get("event") or {}
    lead = event.get("lead_id") or (event.get("data") or {}).get("lead_id")
    if lead is None and event.get("object_type") == "lead":
        lead = event.get("object_id")
    return str(lead) if lead else None


def _payload(run: RunRow) -> dict[str, Any]:
    data = {k: v for k, v in vars(run).items() if k not in ("seq",)}
    origin = _event_lead(run)
    data["merged_from"] = origin if origin and run.lead_id and origin != run.lead_id else None
    for key in ("created", "updated", "available_at", "lease_until"):
        data[key] = (
            None if data[key] is None else datetime.fromtimestamp(data[key], UTC).isoformat()
        )
    return data


def audit_rows_for(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The audit rows of one run, in order (a query on ``run_id``, not a scan)."""
    from sqlalchemy import select

    table = store.tables.audit
    query = select(table).where(table.c.run_id == run_id).order_by(table.c.seq)
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _find(
    get: Callable[[str], RunRow | None], find: Callable[[str], list[RunRow]], run_id: str
) -> RunRow:
    """The run ``run_id`` names: its id, or the one run whose id starts so."""
    found = get(run_id)
    if found is not None:
        return found
    matches = find(run_id)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise fail(f"{run_id!r} matches several runs: {', '.join(m.id for m in matches)}")
    raise fail(f"no run {run_id!r}")


def _read(reader: Reader, run_id: str) -> RunRow:
    """``_find`` on the standard-library reader (or writer)."""
    from closeguard.store.records import run_row

    return _find(
        lambda i: None if (row := reader.run(i)) is None else run_row(row),
        lambda p: [run_row(row) for row in reader.runs_with_prefix(p)],
        run_id,
    )


def _stored(run_id: str) -> RunRow:
    """``_find`` on the ``Store`` (for the commands that write)."""
    from closeguard.store.runs import RunRows

    rows = RunRows(existing_store())
    return _find(rows.get, rows.find, run_id)


def _run_details(run_id: str) -> tuple[RunRow, list[tuple[str, str, Any]], list[dict[str, Any]]]:
    """The run, its journal's ``(key, status, result)`` and its audit rows: read on the
    standard library when the store allows it, else through the ``Store``."""
    reader = store_reader()
    if reader is not None:
        with reader, reader.snapshot():
            run = _read(reader, run_id)
            effects = [
                (e["key"], e["status"], None if e["result"] is None else json.loads(e["result"]))
                for e in reader.effects(run.id)
            ]
            return run, effects, reader.audit.for_run(run.id)
    from closeguard.store.effects import EffectRows

    run = _stored(run_id)
    store = existing_store()
    journal: list[tuple[str, str, Any]] = [
        (e.key, e.status, e.result) for e in EffectRows(store).for_run(run.id)
    ]
    return run, journal, audit_rows_for(store, run.id)


def _recent(status: str | None, workflow: str | None, limit: int) -> list[RunRow]:
    """``RunRows.list``, read on the standard library when the store allows it."""
    reader = store_reader()
    if reader is None:
        from closeguard.store.runs import RunRows

        return RunRows(existing_store()).list(status=status, workflow=workflow, limit=limit)
    from closeguard.store.records import run_row

    with reader:
        rows = reader.runs(status=status, workflow=workflow, limit=limit)
    return [run_row(row) for row in rows]


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option("--status", "-s", metavar="STATUS", help=f"Only {', '.join(STATUSES)}."),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", metavar="NAME", help="Only this workflow.")
    ] = None,
    limit: LimitOpt = 50,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs, newest first."""
    if status is not None and status not in STATUSES:
        raise fail(f"--status takes one of {', '.join(STATUSES)}", 2)
    from closeguard.cli._table import Table, styled

    runs = _recent(status, workflow, limit)
    if as_json:
        print_json([_payload(r) for r in runs])
        return
    table = Table("id", "workflow", "status", "lead", "trigger", "attempts", "updated", "error")
    for run in runs:
        table.add_row(
            run.id,
            run.workflow,
            styled(run.status, STATUS_STYLE.get(run.status)),
            run.lead_id or "-",
            run.trigger_key,
            str(run.attempts),
            _when(run.updated),
            (run.error or "-")[:80],
        )
    table.print()


@app.command("show")
def show(run_id: IdArg, as_json: JsonOpt = False) -> None:
    """One run: its trigger, status, error, effects journal and audited calls."""
    run, effects, calls = _run_details(run_id)
    data = _payload(run)
    data["effects"] = [
        {"key": key, "status": status, "result_id": (result or {}).get("id")}
        if isinstance(result, dict | None)
        else {"key": key, "status": status}
        for key, status, result in effects
    ]
    data["calls"] = [
        {k: row[k] for k in ("ts", "method", "path", "decision", "rule", "status_code")}
        for row in calls
    ]
    if as_json:
        print_json(data)
        return
    for key in ("id", "workflow", "status", "kind", "trigger_key", "lead_id", "attempts"):
        typer.echo(f"{key + ':':<13} {data[key]}")
    if data["merged_from"]:
        typer.echo(f"{'merged from:':<13} {data['merged_from']} (the run followed the merge)")
    for key in ("created", "updated", "approval_id", "error"):
        if data[key] is not None:
            typer.echo(f"{key + ':':<13} {data[key]}")
    if run.state:
        typer.echo(f"{'state:':<13} {run.state}")
    for effect in data["effects"]:
        typer.echo(
            f"effect:       {effect['key']} {effect['status']} {effect.get('result_id') or ''}"
        )
    for call in data["calls"]:
        typer.echo(
            f"call:         {call['method']} {call['path']} {call['decision']} "
            f"{call['status_code'] or ''} {call['rule'] or ''}".rstrip()
        )
    if run.status == "waiting_approval" and run.approval_id:
        typer.echo(f"next:         closeguard approvals approve {run.approval_id} --as NAME")
    elif run.status in ("dead", "failed"):
        typer.echo(f"next:         closeguard runs retry {run.id}")


@app.command("retry")
def retry(run_id: IdArg) -> None:
    """Put a dead or failed run back in its lead's order (a running worker takes it)."""
    writer = store_writer()
    if writer is not None:
        import time

        with writer:
            run = _read(writer, run_id)
            retried = writer.requeue(run.id, ("dead", "failed"), time.time(), attempts=0)
    else:
        import asyncio

        from closeguard.workflows.queue_pg import queue_for

        run = _stored(run_id)
        retried = asyncio.run(queue_for(existing_store()).retry(run.id))
    if not retried:
        raise fail(f"run {run.id} is {run.status}; only dead or failed runs are retried")
    typer.echo(f"run {run.id} ({run.workflow}) is queued again in its lead's order")
