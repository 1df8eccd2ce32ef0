"""``closeguard workflows``: list, show and run the packaged and your own workflows."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from closeguard.agent.runtime import open_store_checkpointer
from closeguard.cli._common import JsonOpt, console, fail, print_json
from closeguard.cli._notify import notifying
from closeguard.cli.runs import audit_rows_for
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL as SIM_BASE_URL
from closeguard.store import Store, default_store
from closeguard.tools import Settings
from closeguard.tools.errors import ConfigError
from closeguard.workflows.definition import (
    EventTrigger,
    ManualTrigger,
    ScheduleTrigger,
    Trigger,
    Workflow,
)
from closeguard.workflows.executor import Executor, RunSpec
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.loader import load_workflows, packaged_workflows
from closeguard.workflows.queue_pg import queue_for
from closeguard.workflows.worker import Worker

__all__ = ["PathOpt", "WorkflowsOpt", "app", "enabled_workflows", "trigger_text"]

app = typer.Typer(help="The workflows: packaged ones and your own.", no_args_is_help=True)

PathOpt = Annotated[
    Path | None,
    typer.Option(
        "--path",
        metavar="FILE|DIR",
        help="Also load your workflows from this module or folder of modules.",
    ),
]
WorkflowsOpt = Annotated[
    str | None,
    typer.Option(
        "--workflows",
        "-w",
        metavar="NAMES",
        help="Comma-separated workflow names to enable (default: all).",
    ),
]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The workflow's name.")]


def all_workflows(path: Path | None) -> dict[str, Workflow]:
    """The packaged workflows, and the user's from ``path`` (a name used twice is an error)."""
    found = packaged_workflows()
    if path is not None:
        for name, workflow in load_workflows(path).items():
            if name in found:
                raise ConfigError(f"workflow {name!r} is also a packaged one", file=str(path))
            found[name] = workflow
    return found


def enabled_workflows(names: str | None, path: Path | None) -> dict[str, Workflow]:
    """The workflows named in ``names`` (comma-separated; all when None)."""
    found = all_workflows(path)
    if names is None:
        return found
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise fail(f"no workflow {', '.join(unknown)}; known: {', '.join(sorted(found))}", 2)
    return {n: found[n] for n in wanted}


def trigger_text(trigger: Trigger) -> str:
    if isinstance(trigger, EventTrigger):
        text = f"event {trigger.object_type}.{'|'.join(trigger.actions)}"
        if trigger.changed_fields:
            text += f" changing {', '.join(trigger.changed_fields)}"
        for label, rules in (("data", trigger.data), ("previous", trigger.previous_data)):
            text += "".join(f" {label}.{k}={v}" for k, v in rules.items())
        return text
    if isinstance(trigger, ScheduleTrigger):
        if trigger.cron is not None:
            return f"schedule cron '{trigger.cron}' ({trigger.timezone})"
        return f"schedule every {trigger.every}"
    required = f" (needs {', '.join(trigger.required)})" if trigger.required else ""
    return f"manual{required}"


def _describe(workflow: Workflow) -> dict[str, Any]:
    policy = workflow.load_policy()
    return {
        "name": workflow.name,
        "trigger": trigger_text(workflow.trigger),
        "policy": policy.name,
        "grants": dict(policy.grants),
        "deny": list(policy.deny),
        "approve": list(policy.approve),
        "params": dict(workflow.params),
        "steps": [getattr(step, "__name__", str(step)) for step in workflow.steps],
        "uses_llm": workflow.uses_llm,
        "description": workflow.description,
    }


@app.command("list")
def list_(path: PathOpt = None, as_json: JsonOpt = False) -> None:
    """The workflows you can enable, with their triggers and policies."""
    found = all_workflows(path)
    if as_json:
        print_json([_describe(w) for w in found.values()])
        return
    table = Table("name", "trigger", "policy", "what it does")
    for workflow in found.values():
        policy = workflow.policy if isinstance(workflow.policy, str) else workflow.policy.name
        table.add_row(workflow.name, trigger_text(workflow.trigger), policy, workflow.description)
    console(140).print(table)


@app.command("show")
def show(name: NameArg, path: PathOpt = None, as_json: JsonOpt = False) -> None:
    """A workflow's trigger, policy grants, parameters and steps."""
    described = _describe(enabled_workflows(name, path)[name])
    if as_json:
        print_json(described)
        return
    for key, value in described.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        typer.echo(f"{key + ':':<12} {shown}")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, lists, true) is taken as such."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--param takes KEY=VALUE, not {pair!r}", 2)
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def read_event(file: Path) -> dict[str, Any]:
    """A Close event from a JSON file (the event itself or a webhook body with ``event``)."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the event: {exc}", file=str(file)) from exc
    if isinstance(data, dict) and isinstance(data.get("event"), dict):
        data = data["event"]
    if not isinstance(data, dict):
        raise ConfigError("the event must be a JSON object", file=str(file))
    data.setdefault("id", f"ev_cli_{secrets.token_hex(8)}")
    return data


@dataclasses.dataclass(frozen=True)
class _Close:
    api_key: str
    base_url: str | None
    store: Store
    checkpoints: Path
    sim: Simulator | None


def _target() -> _Close:
    settings = Settings()
    if settings.close_api_key is not None:
        store = default_store()
        folder = Path(str(store.url.database)).parent if store.dialect == "sqlite" else Path.cwd()
        return _Close(
            settings.close_api_key.get_secret_value(),
            settings.close_base_url,
            store,
            folder / "checkpoints.db",
            None,
        )
    folder = Path(tempfile.mkdtemp(prefix="closeguard-run-"))
    sim = Simulator(seed=7, leads=30)
    store = Store(f"sqlite:///{folder / 'store.db'}")
    return _Close(sim.api_key, SIM_BASE_URL, store, folder / "checkpoints.db", sim)


async def _run_once(
    workflow: Workflow,
    target: _Close,
    event: Mapping[str, Any] | None,
    params: Mapping[str, Any],
    dry_run: bool,
) -> dict[str, Any]:
    async with (
        open_store_checkpointer(target.store, target.checkpoints) as saver,
        notifying(
            target.store,
            api_key=target.api_key,
            base_url=target.base_url,
            transport=target.sim.transport() if target.sim else None,
            say=lambda text: typer.echo(text, err=True),
        ),
    ):
        executor = Executor(
            store=target.store,
            checkpointer=saver,
            api_key=target.api_key,
            transport=target.sim.transport() if target.sim else None,
            base_url=target.base_url,
        )
        if dry_run:
            policy = dataclasses.replace(workflow.load_policy(), mode="dry_run")
            workflow = dataclasses.replace(workflow, policy=policy)
            spec = RunSpec(
                run_id=f"dry_{secrets.token_hex(6)}",
                workflow=workflow.name,
                event=event,
                tick=datetime.now(UTC) if isinstance(workflow.trigger, ScheduleTrigger) else None,
                params=params,
                lead_id=workflow.lead_for(event),
            )
            outcome = await executor.execute(workflow, spec)
            return {"run_id": spec.run_id, "status": outcome.status, "error": outcome.error}
        queue = queue_for(target.store)
        inbox = Inbox(target.store, [workflow], queue)
        if event is not None:
            await inbox.add(event, source="cli")
            found = await target.store.run(queue.rows.by_trigger, workflow.name, event["id"])
            if found is None:
                raise fail(f"{workflow.name} is not triggered by this event ({event['id']})")
            run_id = found.id
        elif isinstance(workflow.trigger, ScheduleTrigger):
            tick = datetime.now(UTC).replace(microsecond=0)
            run_id = await inbox.add_tick(workflow.name, tick) or ""
        else:
            run_id = await inbox.add_manual(workflow.name, params) or ""
        worker = Worker(queue, executor, {workflow.name: workflow}, store=target.store)
        claimed = await queue.claim_run(run_id, worker.name)
        if claimed is not None:
            await worker.execute(claimed)
        run = await queue.get(run_id)
        assert run is not None
        return {
            "run_id": run.id,
            "status": run.status,
            "error": run.error,
            "approval_id": run.approval_id if run.status == "waiting_approval" else None,
        }


@app.command("run")
def run_(
    name: NameArg,
    event: Annotated[
        Path | None,
        typer.Option("--event", metavar="FILE", help="Trigger with this Close event (JSON)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="KEY=VALUE", help="A parameter (repeatable)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and show every call; send no write.")
    ] = False,
    path: PathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a workflow once now and show what it did (no CLOSE_API_KEY: on a simulator)."""
    workflow = enabled_workflows(name, path)[name]
    params = parse_params(param or [])
    loaded = read_event(event) if event is not None else None
    if isinstance(workflow.trigger, EventTrigger) and loaded is None:
        raise fail(f"{name} is triggered by events: give --event FILE.json", 2)
    if isinstance(workflow.trigger, ManualTrigger):
        missing = [p for p in workflow.trigger.required if p not in params]
        if missing:
            raise fail(f"{name} needs --param {' --param '.join(m + '=...' for m in missing)}", 2)
    target = _target()
    result = asyncio.run(_run_once(workflow, target, loaded, params, dry_run))
    calls = [
        {
            "method": row["method"],
            "path": row["path"],
            "decision": row["decision"],
            "status": row["status_code"],
        }
        for row in audit_rows_for(target.store, result["run_id"])
    ]
    result["calls"] = calls
    if as_json:
        print_json(result)
        return
    where = "a simulated organization (no CLOSE_API_KEY)" if target.sim else "Close"
    typer.echo(f"{name} on {where}: run {result['run_id']} {result['status']}")
    for call in calls:
        typer.echo(
            f"  {call['method']:<6} {call['path']}  {call['decision']} {call['status'] or ''}"
        )
    if result.get("error"):
        typer.echo(f"  error: {result['error']}")
    if result.get("approval_id"):
        typer.echo(
            f"  waiting for approval: closeguard approvals approve {result['approval_id']} "
            "--as NAME (closeguard run resumes it)"
        )
    if result["status"] in ("failed", "dead", "rejected"):
        raise typer.Exit(1)
