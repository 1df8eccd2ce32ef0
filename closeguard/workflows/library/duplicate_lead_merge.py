"""duplicate-lead-merge: a new lead shares a contact email with an existing lead -> merge.

The new lead (the duplicate) is merged into the oldest existing lead with a contact
email in common (compared exactly, ignoring case), so the older lead, its id and its
history survive and the new one's contacts, tasks and activities move over. A merge
cannot be undone: the policy sends it to a person (``approve: [lead.merge]``), and the
run waits with the approval id until they decide; approved, it merges once, rejected,
nothing changes. The policy lets only the triggering lead be the merge's source.
"""

from __future__ import annotations

from closeguard.tools import models as m
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.library._common import lead_or_none, once

NAME = "duplicate-lead-merge"


def _emails(lead: m.Lead) -> set[str]:
    return {e.email.casefold() for c in lead.contacts for e in c.emails if e.email}


def _new_lead_id(ctx: Context) -> str:
    return str((ctx.event or {}).get("object_id") or ctx.event_data["id"])


async def find_original(ctx: Context) -> None:
    """The oldest other lead with a contact email in common, if any."""
    lead_id = _new_lead_id(ctx)
    lead = await lead_or_none(ctx.client, lead_id)
    emails = _emails(lead) if lead else set()
    if not emails:
        ctx.log.info("lead %s: %s", lead_id, "gone" if lead is None else "no contact email")
        return
    matches: dict[str, m.Lead] = {}
    for email in sorted(emails):
        async for other in ctx.client.leads.iter(query=f'email:"{email}"'):
            if other.id != lead_id and email in _emails(other):
                matches[other.id] = other
    if not matches:
        ctx.log.info("lead %s: no other lead shares %s", lead_id, ", ".join(sorted(emails)))
        return
    original = min(matches.values(), key=lambda o: (o.date_created or "", o.id))
    ctx.state["destination"] = original.id
    ctx.state["shared"] = sorted(emails & _emails(original))
    ctx.log.info("lead %s duplicates %s (%s)", lead_id, original.id, ", ".join(ctx.state["shared"]))


async def merge(ctx: Context) -> None:
    """Merge the new lead into the original (waits for a human approval)."""
    destination = ctx.state.get("destination")
    if not destination:
        return
    source = _new_lead_id(ctx)

    async def find() -> m.Lead | None:
        if await lead_or_none(ctx.client, source) is not None:
            return None
        return await lead_or_none(ctx.client, destination)

    await once(ctx, "merge", find, lambda: ctx.client.leads.merge(source, destination))
    ctx.log.info("merged %s into %s", source, destination)


WORKFLOW = Workflow(
    name=NAME,
    trigger=EventTrigger("lead", "created"),
    policy=NAME,
    steps=(find_original, merge),
    description="A lead is created whose contact email matches an existing lead: a merge "
    "into the older lead, after a human approves it.",
)
