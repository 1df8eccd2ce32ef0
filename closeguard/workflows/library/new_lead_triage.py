"""new-lead-triage: a lead is created -> an owner by round robin and an intro call task.

Speed to lead: the intro call task is due at the moment the lead arrived, assigned to
the owner. The owner is the next of the organization's active members (its
``memberships``, ordered by user id, or the ``users`` parameter) in a durable rotation:
a counter in the store per set of users, one atomic step per lead, so turns are fair
whatever deletes, merges, imports, restarts or workers there are, and a retried run (or a
second run for the lead) keeps the lead's first turn. A user who leaves the organization
drops out: the remaining users rotate on a counter of their own. Close has no built-in
lead owner: when the organization has a lead custom field of type user named
``owner_field`` (default "Lead Owner") and the lead was created without an owner, it is set
there too; otherwise the intro task's assignee is the owner.

A lead has at most one open intro call task (a task whose text starts like ``task_text``
before its ``{lead}``): a lead that has one gets no other. A run for a lead merged away
goes to the destination (``ctx.lead_id``) and finds the intro task there; after
``duplicate-lead-merge`` merges two leads that each had one, it completes the one the merge
brought over (see ``docs/architecture.md``, "Workflows that meet on one lead").

Calls per run: the owner field and the intro task, plus one read (the lead's tasks, to
find an intro task already there). Members and custom fields come from the organization
facts, read once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.library._common import (
    event_time,
    find_task,
    lead_or_none,
    once,
    owner_field,
    task_head,
)

if TYPE_CHECKING:
    from closeguard.tools import models as m

NAME = "new-lead-triage"


async def _active_users(ctx: Context) -> list[str]:
    given = ctx.params.get("users") or ()
    chosen = [str(u).strip() for u in (given.split(",") if isinstance(given, str) else given)]
    if chosen:
        return sorted({u for u in chosen if u})
    return await ctx.facts.active_users()


def _lead_id(ctx: Context) -> str:
    return str(ctx.lead_id or (ctx.event or {}).get("object_id") or ctx.event_data["id"])


async def choose_owner(ctx: Context) -> None:
    """Pick the owner: the lead's turn in the rotation over the active users."""
    users = await _active_users(ctx)
    if not users:
        raise RuntimeError("new-lead-triage: the organization has no active users to assign")
    ctx.state["owner"] = await ctx.turn(NAME, users)
    ctx.state["owner_field"] = await owner_field(ctx, ctx.params.get("owner_field"))
    ctx.log.info(
        "owner of lead %s: %s (of %d users)", _lead_id(ctx), ctx.state["owner"], len(users)
    )


async def set_owner(ctx: Context) -> None:
    """Record the owner on the lead's owner field, unless the lead came with one."""
    field_id, owner, lead_id = ctx.state.get("owner_field"), ctx.state["owner"], _lead_id(ctx)
    if not field_id:
        ctx.log.info(
            "no lead user field %r: the intro task's assignee is the owner",
            ctx.params.get("owner_field"),
        )
        return
    key = f"custom.{field_id}"
    if ctx.event_data.get(key) or lead_id != (ctx.event or {}).get("object_id", lead_id):
        # created with an owner, or merged into a lead that has its own: leave it
        ctx.log.info("lead %s keeps the owner it has", lead_id)
        return

    async def find() -> m.Lead | None:
        lead = await lead_or_none(ctx.client, lead_id)
        return lead if lead is None or (lead.model_extra or {}).get(key) else None

    await ctx.effect("owner", lambda: ctx.client.leads.update(lead_id, {key: owner}), find=find)


async def create_intro_task(ctx: Context) -> None:
    """The intro call task for the owner, due now, unless the lead has an open one."""
    lead = ctx.event_data
    lead_id = _lead_id(ctx)
    template = str(ctx.params["task_text"])
    text = template.format(lead=lead.get("display_name") or lead_id)
    arrived = event_time(ctx)
    body: dict[str, Any] = {
        "lead_id": lead_id,
        "assigned_to": ctx.state["owner"],
        "text": text,
        "date": arrived.isoformat(),
    }

    async def find() -> m.Task | None:
        return await find_task(
            ctx.client, lead_id, task_head(template), prefix=True, open_only=True
        )

    await once(ctx, "intro-task", find, lambda: ctx.client.tasks.create(body))


WORKFLOW = Workflow(
    name=NAME,
    trigger=EventTrigger("lead", "created"),
    policy=NAME,
    steps=(choose_owner, set_owner, create_intro_task),
    description="A lead is created: an owner by round robin over active users and an "
    "intro call task due now.",
    params={"owner_field": "Lead Owner", "users": [], "task_text": "Intro call: {lead}"},
)
