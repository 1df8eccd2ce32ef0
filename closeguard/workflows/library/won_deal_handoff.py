"""won-deal-handoff: an opportunity is won -> handoff note, customer status, onboarding task.

On the won opportunity's lead: the lead moved to the lead status labelled
``customer_status`` (default "Customer"; a missing label fails the run with its name,
before anything is written), a handoff note (value, owner, contact, the deal's note), and
an onboarding task for ``onboarding_user`` (default the deal's owner) due in
``onboarding_days`` business days. Each write reads Close first (the note and task name
the opportunity; a lead already in the customer status is left alone), so a replayed
event changes nothing.
"""

from __future__ import annotations

from typing import Any

from closeguard.tools import models as m
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.library._common import (
    business_days_after,
    day,
    event_time,
    find_note,
    find_task,
    lead_or_none,
    now_on,
    once,
)

NAME = "won-deal-handoff"


def _money(opp: Any) -> str:
    cents = opp.get("value") or 0
    period = {"monthly": "/month", "annual": "/year"}.get(opp.get("value_period") or "", "")
    return f"{cents / 100:,.2f} {opp.get('value_currency') or ''}".strip() + period


async def write_handoff_note(ctx: Context) -> None:
    """A note for the team taking over: what was sold, by whom, to whom."""
    opp = ctx.event_data
    owner = opp.get("user_name") or opp.get("user_id") or "unknown"
    head = f"Handoff: deal {opp['id']} won"
    lines = [
        f"{head} ({_money(opp)}).",
        f"Sold by: {owner}.",
        f"Contact: {opp.get('contact_name') or opp.get('contact_id') or 'none recorded'}.",
    ]
    if opp.get("note"):
        lines.append(f"Deal notes: {opp['note']}")
    lead_id = now_on(ctx, str(opp["lead_id"]))
    body = {"lead_id": lead_id, "note": "\n".join(lines)}
    await once(
        ctx,
        "handoff-note",
        lambda: find_note(ctx.client, lead_id, head),
        lambda: ctx.client.notes.create(body),
    )


async def move_to_customer(ctx: Context) -> None:
    """Set the lead's status to the customer status (a lead there already is unchanged:
    the same status again changes nothing in Close, so no read comes first)."""
    lead_id = now_on(ctx, str(ctx.event_data["lead_id"]))
    label = str(ctx.params["customer_status"])
    status = next(
        (s for s in await ctx.facts.lead_statuses() if s.label.casefold() == label.casefold()),
        None,
    )
    if status is None:
        raise LookupError(f"no lead status labelled {label!r} (parameter customer_status)")
    status_id = status.id

    async def find() -> m.Lead | None:
        lead = await lead_or_none(ctx.client, lead_id)
        return lead if lead is None or lead.status_id == status_id else None

    async def write() -> m.Lead:
        return await ctx.client.leads.update(lead_id, {"status_id": status_id})

    await ctx.effect("customer-status", write, find=find)


async def create_onboarding_task(ctx: Context) -> None:
    """The onboarding kickoff task."""
    opp = ctx.event_data
    won_at = event_time(ctx)
    due = business_days_after(won_at.date(), int(ctx.params["onboarding_days"]))
    lead_id = now_on(ctx, str(opp["lead_id"]))
    text = f"Onboarding kickoff for {opp.get('lead_name') or opp['lead_id']} (deal {opp['id']})"
    body: dict[str, Any] = {"lead_id": lead_id, "text": text, "date": day(due)}
    assignee = ctx.params.get("onboarding_user") or opp.get("user_id")
    if assignee:
        body["assigned_to"] = assignee
    await once(
        ctx,
        "onboarding-task",
        lambda: find_task(ctx.client, lead_id, text),
        lambda: ctx.client.tasks.create(body),
    )


WORKFLOW = Workflow(
    name=NAME,
    trigger=EventTrigger(
        "opportunity", "updated", changed_fields=("status_id",), data={"status_type": "won"}
    ),
    policy=NAME,
    steps=(move_to_customer, write_handoff_note, create_onboarding_task),
    description="An opportunity is won: a handoff note on the lead, the lead moved to a "
    "customer status, an onboarding task.",
    params={"customer_status": "Customer", "onboarding_days": 3, "onboarding_user": None},
)
