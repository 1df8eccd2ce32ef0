"""duplicate-lead-merge: a new lead shares a contact email with an existing lead -> merge.

The new lead (the duplicate) is merged into the oldest existing lead with a contact
email in common (compared exactly, ignoring case), so the older lead, its id and its
history survive and the new one's contacts, tasks and activities move over. A merge
cannot be undone: the policy sends it to a person (``approve: [lead.merge]``), and the
run waits with the approval id until they decide; approved, it merges once, rejected,
nothing changes. The policy lets only the triggering lead be the merge's source.

After the merge, the surviving lead keeps one open task of each kind that is one to a lead
(``one_open_per_lead``: texts starting with "Intro call:", what ``new-lead-triage``
writes): the oldest stays, the ones the merge brought over are marked complete. That is
the rule for workflows that meet on one lead (``docs/architecture.md``): each writes
what it would write on the lead as it is now, and one that changes what a lead is (here a
merge) reconciles the records it brought together. A lead merged away by a person before
this run looks at it is not followed: the duplicate is gone, the run ends ``skipped``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.library._common import lead_or_none, lead_tasks

if TYPE_CHECKING:
    from closeguard.tools import models as m

NAME = "duplicate-lead-merge"


def _emails(lead: m.Lead) -> set[str]:
    return {e.email.casefold() for c in lead.contacts for e in c.emails if e.email}


def _new_lead_id(ctx: Context) -> str:
    return str((ctx.event or {}).get("object_id") or ctx.event_data["id"])


async def find_original(ctx: Context) -> None:
    """The oldest other lead with a contact email in common, if any; only leads older than
    this one (so the older of two duplicates, when its own run comes late, is left alone
    and the newer is merged into it, never the other way round)."""
    lead_id = _new_lead_id(ctx)
    lead = await lead_or_none(ctx.client, lead_id)
    emails = _emails(lead) if lead else set()
    if not emails:
        ctx.log.info("lead %s: %s", lead_id, "gone" if lead is None else "no contact email")
        return
    matches: dict[str, m.Lead] = {}
    mine = (lead.date_created or "", lead_id) if lead else ("", lead_id)
    for email in sorted(emails):
        async for other in ctx.client.leads.iter(query=f'email:"{email}"'):
            older = (other.date_created or "", other.id) < mine
            if other.id != lead_id and older and email in _emails(other):
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

    # no read first: the merge waits for a person, and only a run that asked before (its
    # intent journaled) may find it done; a source already gone makes the run moot
    await ctx.effect("merge", lambda: ctx.client.leads.merge(source, destination), find=find)
    ctx.log.info("merged %s into %s", source, destination)


async def keep_one_open(ctx: Context) -> None:
    """On the merged lead, complete all but the oldest open task of each one-a-lead kind."""
    destination = ctx.state.get("destination")
    if not destination:
        return
    heads = [str(h) for h in ctx.params.get("one_open_per_lead") or ()]
    if not heads:
        return
    tasks = [t for t in await lead_tasks(ctx.client, destination) if not t.is_complete]
    for head in heads:
        same = sorted(
            (t for t in tasks if (t.text or "").startswith(head)),
            key=lambda t: (t.date_created or "", t.id),
        )
        for extra in same[1:]:

            async def complete(task_id: str = extra.id) -> m.Task:
                return await ctx.client.tasks.update(task_id, {"is_complete": True})

            await ctx.effect(f"complete:{extra.id}", complete)
            ctx.log.info("lead %s: %r kept, %s completed", destination, head, extra.id)


WORKFLOW = Workflow(
    name=NAME,
    trigger=EventTrigger("lead", "created"),
    policy=NAME,
    steps=(find_original, merge, keep_one_open),
    description="A lead is created whose contact email matches an existing lead: a merge "
    "into the older lead, after a human approves it.",
    params={"one_open_per_lead": ["Intro call:"]},
    follow_merges=False,
)
