"""``closeguard workflows``: list, show and run the packaged and your own workflows."""

from __future__ import annotations

import dataclasses
import json
import secrets
import tempfile
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
import yaml

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import JsonOpt, fail, print_json
from closeguard.cli.runs import audit_rows_for
from closeguard.guardrails.conditions import describe as describe_condition
from closeguard.tools.errors import ConfigError
from closeguard.workflows.definition import (
    EventTrigger,
    ManualTrigger,
    ScheduleTrigger,
    Trigger,
    Workflow,
)
from closeguard.workflows.loader import load_workflows, packaged_workflows
from closeguard.workflows.rules import RULE_SCHEMA, RuleWorkflow, policy_data, step_kinds

if TYPE_CHECKING:
    from closeguard.simulator import Simulator
    from closeguard.store import Store

__all__ = ["PathOpt", "WorkflowsOpt", "app", "enabled_workflows", "trigger_text"]

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["workflows"].help, no_args_is_help=True)

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
    from closeguard.cli._table import Table

    table = Table("name", "trigger", "policy", "what it does")
    for workflow in found.values():
        policy = workflow.policy if isinstance(workflow.policy, str) else workflow.policy.name
        table.add_row(workflow.name, trigger_text(workflow.trigger), policy, workflow.description)
    table.print()


@app.command("show")
def show(name: NameArg, path: PathOpt = None, as_json: JsonOpt = False) -> None:
    """A workflow's trigger, policy grants, parameters and steps.

    For a rule: its trigger and steps, then the policy derived from its steps as a policy
    YAML would hold it (with --json, that policy data alone: grants, deny, approve,
    constraints, limits).
    """
    workflow = enabled_workflows(name, path)[name]
    if isinstance(workflow, RuleWorkflow) and workflow.rule is not None:
        data = policy_data(workflow.load_policy())
        if as_json:
            print_json(data)
            return
        rule = workflow.rule
        typer.echo(f"rule:       {rule.name}  ({rule.file}:{rule.line})")
        typer.echo(f"trigger:    {trigger_text(workflow.trigger)}")
        if rule.condition is not None:
            typer.echo(f"if:         {describe_condition(rule.condition)}")
        typer.echo(f"params:     {json.dumps(dict(workflow.params))}")
        for index, step in enumerate(step_kinds(rule.steps), start=1):
            typer.echo(f"step {index}:     {step}")
        typer.echo("policy (derived from the steps):")
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
        typer.echo(textwrap.indent(text.rstrip(), "  "))
        return
    described = _describe(workflow)
    if as_json:
        print_json(described)
        return
    for key, value in described.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
        typer.echo(f"{key + ':':<12} {shown}")


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a rule file (for editors and CI; docs/rules.md explains it)."""
    print_json(RULE_SCHEMA)


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
    from closeguard.simulator import Simulator
    from closeguard.simulator.core import BASE_URL as SIM_BASE_URL
    from closeguard.store import Store, default_store
    from closeguard.tools import Settings

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
    from closeguard.agent.runtime import open_store_checkpointer
    from closeguard.cli._notify import notifying
    from closeguard.workflows.executor import Executor, RunSpec
    from closeguard.workflows.inbox import Inbox
    from closeguard.workflows.queue_pg import queue_for
    from closeguard.workflows.worker import Worker

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
            return {
                "run_id": spec.run_id,
                "status": outcome.status,
                "error": outcome.error,
                "approval_id": outcome.approval_id,
                "state": outcome.state,
            }
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
            "state": run.state or {},
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
    import asyncio

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
    result.pop("state", None)
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


# -- trying a rule --------------------------------------------------------------------------

_SAMPLE_FROM: dict[str, tuple[str, str | None]] = {
    "lead": ("leads", None),
    "contact": ("contacts", None),
    "opportunity": ("opportunities", None),
    "task": ("tasks", None),
    "activity.call": ("activities", "Call"),
    "activity.note": ("activities", "Note"),
    "activity.email": ("activities", "Email"),
}


def sample_event(workflow: Workflow, sim: Simulator, name: str) -> dict[str, Any]:
    """An event named ``name`` (``opportunity.updated``) about an object of the simulated
    organization, the first one the workflow's trigger matches (its ``if:`` included)."""
    kind, _, action = name.rpartition(".")
    if kind not in _SAMPLE_FROM:
        known = ", ".join(f"{k}.ACTION" for k in _SAMPLE_FROM)
        raise fail(f"--sample: no sample for {name!r}; samples exist for {known}", 2)
    collection, activity_type = _SAMPLE_FROM[kind]
    trigger = workflow.trigger
    changed = list(trigger.changed_fields) if isinstance(trigger, EventTrigger) else []
    now = datetime.fromtimestamp(sim.clock.now(), UTC).isoformat()
    tried = 0
    for obj in sim.state[cast(Any, collection)].values():
        if activity_type is not None and obj.get("_type") != activity_type:
            continue
        tried += 1
        lead_id = obj["id"] if kind == "lead" else obj.get("lead_id")
        event = {
            "id": f"ev_sample_{secrets.token_hex(8)}",
            "date_created": now,
            "date_updated": now,
            "object_type": kind,
            "object_id": obj["id"],
            "action": action,
            "lead_id": lead_id,
            "changed_fields": changed if action == "updated" else [],
            "previous_data": {f: None for f in changed} if action == "updated" else {},
            "data": json.loads(json.dumps(obj)),
        }
        if trigger.matches(event) if isinstance(trigger, EventTrigger) else True:
            return event
    raise fail(
        f"--sample {name}: none of the {tried} {kind} objects of the simulated organization "
        f"makes an event {workflow.name} reacts to (check its on:, changed: and if:); "
        "give --event FILE.json",
        1,
    )


@app.command("test")
def test_(
    name: NameArg,
    event: Annotated[
        Path | None,
        typer.Option("--event", metavar="FILE", help="Trigger with this Close event (JSON)."),
    ] = None,
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            metavar="EVENT",
            help="Trigger with a sample event (opportunity.updated) about an object of the "
            "simulated organization that the rule's trigger matches.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="KEY=VALUE", help="A parameter (repeatable)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Run against the configured Close (CLOSE_API_KEY), deciding every call "
            "and sending no write.",
        ),
    ] = False,
    path: PathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Try a rule (or any workflow) before it runs for real: each call, its decision, the
    result.

    By default the run happens on an embedded simulated organization (nothing leaves this
    machine); with --dry-run on the configured Close, where reads are made and writes are
    decided but never sent.
    """
    from closeguard.simulator import Simulator
    from closeguard.simulator.core import BASE_URL as SIM_BASE_URL
    from closeguard.store import Store
    from closeguard.tools import Settings

    workflow = enabled_workflows(name, path)[name]
    if event is not None and sample is not None:
        raise fail("give --event FILE or --sample EVENT, not both", 2)
    params = parse_params(param or [])
    if dry_run:
        if Settings().close_api_key is None:
            raise fail(
                "--dry-run runs against the configured Close: set CLOSE_API_KEY (without "
                "--dry-run the rule runs on an embedded simulated organization)",
                2,
            )
        if sample is not None:
            raise fail("--sample needs the simulated organization: use --event with --dry-run", 2)
        target = _target()
    else:
        folder = Path(tempfile.mkdtemp(prefix="closeguard-test-"))
        sim = Simulator(seed=7, leads=30)
        store = Store(f"sqlite:///{folder / 'store.db'}")
        target = _Close(sim.api_key, SIM_BASE_URL, store, folder / "checkpoints.db", sim)
    loaded = read_event(event) if event is not None else None
    if sample is not None:
        assert target.sim is not None
        loaded = sample_event(workflow, target.sim, sample)
    if isinstance(workflow.trigger, EventTrigger) and loaded is None:
        raise fail(f"{name} is triggered by events: give --event FILE.json or --sample EVENT", 2)
    if isinstance(workflow.trigger, ManualTrigger):
        missing = [p for p in workflow.trigger.required if p not in params]
        if missing:
            raise fail(f"{name} needs --param {' --param '.join(m + '=...' for m in missing)}", 2)
    import asyncio

    result = asyncio.run(_run_once(workflow, target, loaded, params, dry_run))
    calls = [
        {
            "actor": row["actor"],
            "method": row["method"],
            "path": row["path"],
            "decision": row["decision"],
            "rule": row["rule"],
            "status": row["status_code"],
        }
        for row in audit_rows_for(target.store, result["run_id"])
    ]
    state = result.get("state") or {}
    report = {
        **result,
        "where": "close (dry run)" if dry_run else "simulator",
        "event": loaded,
        "calls": calls,
        "results": state.get("results", {}),
        "notes": state.get("notes", []),
    }
    report.pop("state", None)
    if as_json:
        print_json(report)
        raise typer.Exit(1 if result["status"] in ("failed", "dead", "rejected") else 0)
    where = "Close, dry run: no write sent" if dry_run else "a simulated organization"
    typer.echo(f"{name} on {where}: run {result['run_id']} {result['status']}")
    if loaded is not None:
        typer.echo(
            f"  event {loaded.get('object_type')}.{loaded.get('action')} "
            f"{loaded.get('object_id', '')} (lead {loaded.get('lead_id')})"
        )
    for call in calls:
        who = "" if call["actor"] == workflow.name else f"  [{call['actor']}]"
        typer.echo(
            f"  {call['method']:<6} {call['path']}  {call['decision']} "
            f"({call['rule'] or '-'}) {call['status'] or ''}{who}"
        )
    for step, value in report["results"].items():
        typer.echo(f"  result {step}: {_short(value)}")
    for note in report["notes"]:
        typer.echo(f"  note: {note}")
    if result.get("error"):
        typer.echo(f"  error: {result['error']}")
    if result.get("approval_id"):
        typer.echo(f"  waiting for approval {result['approval_id']}")
    if result["status"] in ("failed", "dead", "rejected"):
        raise typer.Exit(1)


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
