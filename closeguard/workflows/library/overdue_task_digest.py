"""overdue-task-digest: daily, one draft email per user listing their overdue tasks.

The email is a draft (``status: draft``) addressed to the user, for them to read in
Close; it is never sent, and the policy makes sending impossible (``status`` must be
``draft``, and sending mail is destructive, which it does not grant). A Close email
belongs to a lead: the draft goes on ``digest_lead_id`` when set, else on the lead of
the user's most overdue task (the one to open first). One digest per user and day: the
subject carries the date, and a draft with that subject to that user means it is done.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from closeguard.workflows.definition import Context, ScheduleTrigger, Workflow
from closeguard.workflows.library._common import day, event_time, once

if TYPE_CHECKING:
    from closeguard.tools import models as m

NAME = "overdue-task-digest"
SUBJECT = "Your overdue tasks on {day}"


def _line(task: m.Task) -> str:
    due = (task.date or "")[:10]
    return f"- due {due}: {task.text or '(no text)'} ({task.lead_name or task.lead_id})"


async def collect(ctx: Context) -> None:
    """Group the open tasks due before today by assignee."""
    today = day(event_time(ctx))
    by_user: defaultdict[str, list[m.Task]] = defaultdict(list)
    async for task in ctx.client.tasks.iter(is_complete=False, date__lt=today):
        if task.assigned_to and task.lead_id:
            by_user[task.assigned_to].append(task)
    ctx.state["today"] = today
    ctx.state["digests"] = {
        user: [
            t.model_dump(mode="json", include={"id", "lead_id", "lead_name", "text", "date"})
            for t in sorted(tasks, key=lambda t: ((t.date or "")[:10], t.id))
        ]
        for user, tasks in sorted(by_user.items())
    }


async def draft_emails(ctx: Context) -> None:
    """One draft per user with overdue tasks."""
    from closeguard.tools.models import Task

    today = ctx.state["today"]
    emails = {u.id: u.email for u in await ctx.facts.users()}
    for user, raw_tasks in ctx.state["digests"].items():
        address = emails.get(user)
        if not address:
            ctx.log.warning("user %s has no email address: no digest", user)
            continue
        tasks = [Task.model_validate(t) for t in raw_tasks]
        lead_id = str(ctx.params.get("digest_lead_id") or tasks[0].lead_id)
        subject = SUBJECT.format(day=today)
        body = {
            "lead_id": lead_id,
            "to": [address],
            "subject": subject,
            "body_text": f"{len(tasks)} tasks past their due date:\n\n"
            + "\n".join(_line(t) for t in tasks),
            "status": "draft",
        }

        async def find(
            lead_id: str = lead_id, subject: str = subject, address: str = address
        ) -> m.EmailActivity | None:
            async for email in ctx.client.emails.iter(lead_id=lead_id):
                if email.subject == subject and address in email.to and email.status == "draft":
                    return email
            return None

        async def write(body: dict[str, Any] = body) -> m.EmailActivity:
            return await ctx.client.emails.create(body)

        draft = await once(ctx, f"digest:{user}", find, write)
        ctx.log.info("digest for %s: %d overdue tasks, draft %s", user, len(tasks), draft["id"])


WORKFLOW = Workflow(
    name=NAME,
    trigger=ScheduleTrigger(cron="0 7 * * *"),
    policy=NAME,
    steps=(collect, draft_emails),
    description="Daily: one draft email (never sent) per user listing their overdue tasks.",
    params={"digest_lead_id": None},
)
