"""rep-offboarding (manual): hand a departing rep's open work to another user.

``closeguard workflows run rep-offboarding --param from_user=user_… --param to_user=user_…``
moves the departing user's open tasks, active opportunities and, where the organization
has a lead owner field (a lead custom field of type user named ``owner_field``, default
"Lead Owner"), the leads they own.

One human approval covers the run. The first write is the bulk move of the open tasks
(``task.bulk_update``, destructive), which the policy sends to a person, and it is made
even when there are no open tasks, so it always gates the run: the approval shows exactly
"open tasks of A go to B", and the run's log line before it counts everything that will
move. Only once it is approved do the opportunity and lead moves follow, one call each,
which the policy confines to changing the owner (every other field is immutable).
Rejected, nothing changes. Asking per opportunity would mean dozens of approvals for
one decision; a second run asks again (an approval is used up by one call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closeguard.workflows.definition import Context, ManualTrigger, Workflow
from closeguard.workflows.library._common import owner_field

if TYPE_CHECKING:
    from closeguard.tools import models as m

NAME = "rep-offboarding"


def _owned_by(field_id: str, user_id: str) -> dict[str, Any]:
    return {
        "type": "field_condition",
        "field": {"type": "custom_field", "custom_field_id": field_id},
        "condition": {"type": "term", "values": [user_id]},
    }


async def plan(ctx: Context) -> None:
    """Check both users and list what will move."""
    source, target = str(ctx.params["from_user"]), str(ctx.params["to_user"])
    if source == target:
        raise ValueError("from_user and to_user are the same user")
    known = {u.id for u in await ctx.facts.users()}
    for user_id in (source, target):
        if user_id not in known:
            await ctx.client.users.get(user_id)  # NotFound names an unknown user
    tasks = [t.id async for t in ctx.client.tasks.iter(assigned_to=source, is_complete=False)]
    opps = [o.id async for o in ctx.client.opportunities.iter(user_id=source, status_type="active")]
    field_id = await owner_field(ctx, ctx.params.get("owner_field"))
    leads = (
        [str(hit["id"]) async for hit in ctx.client.search.iter(_owned_by(field_id, source))]
        if field_id
        else []
    )
    ctx.state.update(owner_field=field_id, opportunities=opps, leads=leads, tasks=len(tasks))
    ctx.log.info(
        "offboarding %s -> %s: %d open tasks, %d active opportunities, %d leads%s",
        source,
        target,
        len(tasks),
        len(opps),
        len(leads),
        "" if field_id else " (no lead owner field)",
    )


async def move_tasks(ctx: Context) -> None:
    """The approval gate: every open task of the departing user, in one bulk update."""
    source, target = str(ctx.params["from_user"]), str(ctx.params["to_user"])
    await ctx.effect(
        "tasks",
        lambda: ctx.client.tasks.bulk_update(
            {"assigned_to": source, "is_complete": False}, {"assigned_to": target}
        ),
    )


async def move_opportunities(ctx: Context) -> None:
    """Each active opportunity to the new owner."""
    target = str(ctx.params["to_user"])
    for opp_id in ctx.state["opportunities"]:

        async def find(opp_id: str = opp_id) -> m.Opportunity | None:
            opp = await ctx.client.opportunities.get(opp_id)
            return opp if opp.user_id == target else None

        async def write(opp_id: str = opp_id) -> m.Opportunity:
            return await ctx.client.opportunities.update(opp_id, {"user_id": target})

        await ctx.effect(f"opportunity:{opp_id}", write, find=find)


async def move_leads(ctx: Context) -> None:
    """Each lead owned by the departing user to the new owner (owner field only)."""
    field_id, target = ctx.state.get("owner_field"), str(ctx.params["to_user"])
    if not field_id:
        return
    key = f"custom.{field_id}"
    for lead_id in ctx.state["leads"]:

        async def find(lead_id: str = lead_id) -> m.Lead | None:
            lead = await ctx.client.leads.get(lead_id)
            return lead if (lead.model_extra or {}).get(key) == target else None

        async def write(lead_id: str = lead_id) -> m.Lead:
            return await ctx.client.leads.update(lead_id, {key: target})

        await ctx.effect(f"lead:{lead_id}", write, find=find)


WORKFLOW = Workflow(
    name=NAME,
    trigger=ManualTrigger(required=("from_user", "to_user")),
    policy=NAME,
    steps=(plan, move_tasks, move_opportunities, move_leads),
    description="Manual: move a departing user's open tasks, active opportunities and "
    "owned leads to another user, behind one approval.",
    params={"owner_field": "Lead Owner"},
)
