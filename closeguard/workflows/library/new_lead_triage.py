"""new-lead-triage: a lead is created -> an owner by round robin and an intro call task.

Speed to lead: the intro call task is due at the moment the lead arrived, assigned to
the owner. The owner is the next of the organization's active members (its
``memberships``, ordered by user id, or the ``users`` parameter), taking turns by the
lead's place in the organization: the lead count when the run first looks (kept in the
run's checkpoint, so a resumed run keeps its choice). Close has no built-in lead owner:
when the organization has a lead custom field of type user named ``owner_field``
(default "Lead Owner") and the lead has no owner yet, it is set there too; otherwise the
intro task's assignee is the owner.
"""

from __future__ import annotations

from typing import Any

from closeguard.tools import models as m
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.library._common import (
    event_time,
    find_task,
    lead_or_none,
    once,
    owner_field,
)

NAME = "new-lead-triage"


async def _active_users(ctx: Context) -> list[str]:
    given = ctx.params.get("users") or ()
    chosen = [str(u).strip() for u in (given.split(",") if isinstance(given, str) else given)]
    if chosen:
        return chosen
    me = await ctx.client.users.me()
    org_id = str(me.organizations[0]["id"])
    org = await ctx.client.organization.get(org_id)
    return sorted(str(member["user_id"]) for member in org.memberships)


async def choose_owner(ctx: Context) -> None:
    """Pick the owner: the next active user in turn."""
    users = await _active_users(ctx)
    if not users:
        raise RuntimeError("new-lead-triage: the organization has no active users to assign")
    count = (await ctx.client.leads.list(limit=1)).total_results or 1
    ctx.state["owner"] = users[(count - 1) % len(users)]
    ctx.state["owner_field"] = await owner_field(ctx.client, ctx.params.get("owner_field"))
    ctx.log.info(
        "owner of lead %s: %s (turn %d of %d)",
        _lead_id(ctx),
        ctx.state["owner"],
        (count - 1) % len(users) + 1,
        len(users),
    )


async def set_owner(ctx: Context) -> None:
    """Record the owner on the lead's owner field, unless it has one already."""
    field_id, owner, lead_id = ctx.state.get("owner_field"), ctx.state["owner"], _lead_id(ctx)
    if not field_id:
        ctx.log.info(
            "no lead user field %r: the intro task's assignee is the owner",
            ctx.params.get("owner_field"),
        )
        return
    key = f"custom.{field_id}"

    async def find() -> m.Lead | None:
        lead = await lead_or_none(ctx.client, lead_id)
        return lead if lead is None or (lead.model_extra or {}).get(key) else None

    await once(ctx, "owner", find, lambda: ctx.client.leads.update(lead_id, {key: owner}))


async def create_intro_task(ctx: Context) -> None:
    """The intro call task for the owner, due now."""
    lead = ctx.event_data
    lead_id = _lead_id(ctx)
    text = str(ctx.params["task_text"]).format(lead=lead.get("display_name") or lead_id)
    arrived = event_time(ctx)
    body: dict[str, Any] = {
        "lead_id": lead_id,
        "assigned_to": ctx.state["owner"],
        "text": text,
        "date": arrived.isoformat(),
    }

    async def find() -> m.Task | None:
        return await find_task(ctx.client, lead_id, text)

    await once(ctx, "intro-task", find, lambda: ctx.client.tasks.create(body))


def _lead_id(ctx: Context) -> str:
    return str((ctx.event or {}).get("object_id") or ctx.event_data["id"])


WORKFLOW = Workflow(
    name=NAME,
    trigger=EventTrigger("lead", "created"),
    policy=NAME,
    steps=(choose_owner, set_owner, create_intro_task),
    description="A lead is created: an owner by round robin over active users and an "
    "intro call task due now.",
    params={"owner_field": "Lead Owner", "users": [], "task_text": "Intro call: {lead}"},
)
