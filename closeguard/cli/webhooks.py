"""``closeguard webhooks``: the Close webhook subscription the enabled workflows need."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from closeguard.cli._app import COMMANDS
from closeguard.cli._common import JsonOpt, print_json
from closeguard.cli.workflows import PathOpt, WorkflowsOpt, enabled_workflows
from closeguard.guardrails import Guarded, Policy
from closeguard.store import default_store
from closeguard.store.cursors import Cursors
from closeguard.tools import CloseClient, ConfigError
from closeguard.workflows.definition import Workflow
from closeguard.workflows.subscriptions import Subscriptions, SyncResult, intake_pairs

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["webhooks"].help, no_args_is_help=True)

ACTOR = "closeguard-webhooks"
INTAKE_POLICY = "event-intake"


def connect() -> CloseClient:
    """A client for the configured Close (``CLOSE_API_KEY``), guarded by ``event-intake``."""
    guarded = Guarded(Policy.load(INTAKE_POLICY), store=default_store())
    try:
        return CloseClient(policy=guarded, actor=ACTOR)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}; closeguard run subscribes its embedded simulator by itself"
        ) from exc


async def _sync(url: str, workflows: list[Workflow]) -> SyncResult:
    cursors = Cursors(default_store())
    async with connect() as client:
        return await Subscriptions(client, cursors, url=url, events=intake_pairs(workflows)).sync()


@app.command("sync")
def sync(
    url: Annotated[
        str,
        typer.Option("--url", metavar="URL", help="The public URL of the webhook receiver."),
    ],
    workflows: WorkflowsOpt = None,
    path: PathOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or update the subscription for exactly the events the workflows need.

    Running it again changes nothing; the signature key is stored, never printed.
    """
    enabled = enabled_workflows(workflows, path)
    result = asyncio.run(_sync(url, list(enabled.values())))
    events = [f"{o}.{a}" for o, a in result.events]
    if as_json:
        print_json(
            [{"id": result.subscription_id, "action": result.action, "url": url, "events": events}]
        )
        return
    typer.echo(f"{result.action}: subscription {result.subscription_id} -> {url}")
    typer.echo(f"events ({len(events)}): {', '.join(events)}")
