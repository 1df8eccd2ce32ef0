"""stale-opportunity-nudge: daily, a nudge task for each active opportunity gone quiet.

An active opportunity is stale when its lead has had no activity (note, call, email,
status change...) for ``days`` days (default 14) before the tick, and the opportunity
itself was not created or changed in that time. Its owner gets a nudge task on the lead,
unless an open nudge for that opportunity is already there (the nudge's text names the
opportunity). At most ``max_nudges`` a run (the policy caps task creation too).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from closeguard.tools import models as m
from closeguard.workflows.definition import Context, ScheduleTrigger, Workflow
from closeguard.workflows.library._common import day, event_time, lead_tasks, once, parse_time

NAME = "stale-opportunity-nudge"
NUDGE = "Nudge: no activity for {days} days on {lead} ({opp}, {status}). Check in?"


async def _quiet_since(ctx: Context, opp: m.Opportunity, cutoff: datetime) -> bool:
    updated = parse_time(opp.date_updated or opp.date_created)
    if updated is not None and updated > cutoff:
        return False
    recent = await ctx.client.activities.list(
        lead_id=opp.lead_id, date_created__gt=cutoff.isoformat(), limit=1
    )
    return not recent.data


async def find_stale(ctx: Context) -> None:
    """List the active opportunities with no activity on their lead since the cutoff."""
    now = event_time(ctx)
    cutoff = now - timedelta(days=int(ctx.params["days"]))
    stale = []
    async for opp in ctx.client.opportunities.iter(status_type="active"):
        if opp.lead_id and await _quiet_since(ctx, opp, cutoff):
            stale.append(
                opp.model_dump(
                    mode="json", include={"id", "lead_id", "lead_name", "user_id", "status_label"}
                )
            )
    limit = int(ctx.params["max_nudges"])
    if len(stale) > limit:
        ctx.log.warning("%d stale opportunities; nudging the first %d", len(stale), limit)
    ctx.state["stale"] = stale[:limit]
    ctx.state["today"] = day(now)


async def nudge_owners(ctx: Context) -> None:
    """One nudge task per stale opportunity, unless an open nudge for it exists."""
    for opp in ctx.state["stale"]:
        text = NUDGE.format(
            days=ctx.params["days"],
            lead=opp.get("lead_name") or opp["lead_id"],
            opp=opp["id"],
            status=opp.get("status_label") or "active",
        )
        body = {"lead_id": opp["lead_id"], "text": text, "date": ctx.state["today"]}
        if opp.get("user_id"):
            body["assigned_to"] = opp["user_id"]

        async def find(lead_id: str = opp["lead_id"], opp_id: str = opp["id"]) -> m.Task | None:
            for task in await lead_tasks(ctx.client, lead_id):
                if (
                    not task.is_complete
                    and (task.text or "").startswith("Nudge:")
                    and (f"({opp_id}," in (task.text or ""))
                ):
                    return task
            return None

        async def write(body: dict[str, Any] = body) -> m.Task:
            return await ctx.client.tasks.create(body)

        task = await once(ctx, f"nudge:{opp['id']}", find, write)
        ctx.log.info("opportunity %s: nudge %s", opp["id"], task["id"])


WORKFLOW = Workflow(
    name=NAME,
    trigger=ScheduleTrigger(cron="0 8 * * *"),
    policy=NAME,
    steps=(find_stale, nudge_owners),
    description="Daily: active opportunities with no activity for N days get a nudge task "
    "for their owner, unless an open nudge exists.",
    params={"days": 14, "max_nudges": 50},
)
