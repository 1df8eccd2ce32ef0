"""Shared pieces of the webhook tests: a lead.created subscription and a workflow on it."""

from __future__ import annotations

from typing import Any

from closeguard.tools import CloseClient
from closeguard.workflows.definition import EventTrigger, Workflow

HOOK_URL = "http://hooks.test/webhooks/close"


async def subscribe_lead_created(client: CloseClient, url: str = HOOK_URL) -> Any:
    """Subscribe ``url`` to lead.created; the webhook as Close answers (with its key)."""
    return await client.post(
        "/webhook/",
        json={"url": url, "events": [{"object_type": "lead", "action": "created"}]},
    )


async def _noop(ctx: Any) -> None:
    return None


def lead_created_flow() -> Workflow:
    """A read-only workflow of one step that does nothing, triggered by lead.created."""
    return Workflow(
        name="on-new-lead",
        trigger=EventTrigger("lead", "created"),
        policy="read-only",
        steps=(_noop,),
    )
