"""follow-up-on-status-change: an opportunity changes status -> a task for its owner.

The task goes on the opportunity's lead, assigned to the opportunity's owner
(``user_id``), due ``business_days`` working days after the change, with a text chosen by
the new status type (won, lost, active). One change gets one task: the task's text names
the opportunity and its new status, and a task with that text created since the change
means the change was already handled (a duplicated or replayed event writes nothing).
"""

from __future__ import annotations

from closeguard.tools import models as m
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.library._common import (
    business_days_after,
    day,
    event_time,
    find_task,
    now_on,
    once,
)

NAME = "follow-up-on-status-change"

TEXTS = {
    "won": "Won {deal}: thank the customer and confirm the next steps",
    "lost": "Lost {deal}: ask why and note it on the lead",
    "active": "{deal} moved to {status}: follow up",
}


async def _status_type(ctx: Context, status_id: str) -> str:
    for status in await ctx.facts.opportunity_statuses():
        if status.id == status_id:
            return status.type
    return "active"


async def create_follow_up(ctx: Context) -> None:
    """Create the follow-up task for the owner, once per status change."""
    opp = ctx.event_data
    lead_id, owner = now_on(ctx, str(opp["lead_id"])), opp.get("user_id")
    kind = opp.get("status_type") or await _status_type(ctx, opp["status_id"])
    label = opp.get("status_label") or opp["status_id"]
    deal = f"{opp.get('lead_name') or 'the'} deal ({opp['id']})"
    text = TEXTS.get(kind, TEXTS["active"]).format(deal=deal, status=label)
    changed_at = event_time(ctx)
    due = business_days_after(changed_at.date(), int(ctx.params["business_days"]))
    body = {"lead_id": lead_id, "text": text, "date": day(due)}
    if owner:
        body["assigned_to"] = owner

    async def find() -> m.Task | None:
        return await find_task(ctx.client, lead_id, text, since=changed_at)

    task = await once(ctx, "follow-up-task", find, lambda: ctx.client.tasks.create(body))
    ctx.log.info("follow-up task %s for %s, due %s", task["id"], owner or "the API user", day(due))


WORKFLOW = Workflow(
    name=NAME,
    trigger=EventTrigger("opportunity", "updated", changed_fields=("status_id",)),
    policy=NAME,
    steps=(create_follow_up,),
    description="An opportunity changes status: a follow-up task for its owner, "
    "due in N business days, worded by the new status type.",
    params={"business_days": 2},
)
