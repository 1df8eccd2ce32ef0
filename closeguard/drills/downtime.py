"""The downtime drill: the runtime is down for an hour of simulated time while leads are
created; on restart the Event Log catch-up must bring every event back, each run once.

The workflow is ``new-lead-triage`` (one intro-call task per new lead). While the runtime
is down every webhook delivery fails; once it is back, Close's late retries arrive too and
must add nothing. Figures: events made, events stored by catch-up, runs completed, and
leads with no intro task (lost) or more than one (duplicated).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from closeguard.evals.wf_trial import eval_worker
from closeguard.guardrails import Approvals, Guarded, Policy
from closeguard.simulator import FakeClock, Simulator
from closeguard.store import Store
from closeguard.store.cursors import Cursors
from closeguard.workflows import packaged_workflows
from closeguard.workflows.catchup import CatchUp
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import SqlRunQueue
from closeguard.workflows.receiver import WebhookReceiver

__all__ = ["DowntimeFigures", "downtime_drill"]

HOOK = "http://runtime.test/webhooks/close"


async def _down(scope: Any, receive: Any, send: Any) -> None:
    """The stopped runtime's address, as a load balancer answers for it (no DNS lookup)."""
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b"down"})


@dataclass
class DowntimeFigures:
    events: int = 0
    caught_up: int = 0
    late_webhooks_new: int = 0
    runs_completed: int = 0
    runs_other: int = 0
    lost: int = 0
    duplicated: int = 0
    windows_waited: int = 0
    """Times the backlog outran the policy's hourly write limit and waited for a window."""


async def downtime_drill(store: Store, *, events: int = 500, hours: float = 1.0) -> DowntimeFigures:
    """Run the drill on ``store`` (a fresh one); the figures."""
    clock = FakeClock()
    sim = Simulator(seed=14, leads=0, clock=clock)
    workflow = packaged_workflows()["new-lead-triage"]
    queue = SqlRunQueue(store, clock=clock)
    inbox = Inbox(store, [workflow], queue)
    intake = Guarded(Policy.load("event-intake"), store=store)
    async with sim.client(policy=intake, actor="closeguard-intake") as client:
        catchup = CatchUp(client, inbox, Cursors(store), clock=clock)
        hook = await client.post(
            "/webhook/",
            json={"url": HOOK, "events": [{"object_type": "lead", "action": "created"}]},
        )
        await catchup.run_once()  # the runtime was up: its position is now
        figures = DowntimeFigures()
        async with sim.client() as person:
            for i in range(events):
                await person.post("/lead/", json={"name": f"Downtime lead {i}"})
                clock.advance(hours * 3600 / events)
        sim.webhooks.mount("http://runtime.test", _down)
        await sim.webhooks.run_due()  # the runtime is down: every attempt fails
        figures.events = events
        while (stored := (await catchup.run_once()).stored) > 0:
            figures.caught_up += stored
    receiver = WebhookReceiver(inbox, [hook["signature_key"]], clock=clock)
    sim.webhooks.mount("http://runtime.test", receiver)
    await sim.webhooks.drain()
    figures.late_webhooks_new = receiver.group.new
    worker = eval_worker(workflow, sim, store, queue)
    while True:
        while await worker.run_one():
            pass
        waiting = await queue.list(status="queued", limit=events * 2)
        if not waiting:
            break
        clock.advance_to(min(r.available_at for r in waiting) + 0.001)
        figures.windows_waited += 1
    assert not Approvals(store).list("pending")
    states = Counter(r.status for r in await queue.list(limit=events * 2))
    figures.runs_completed = states.pop("completed", 0)
    figures.runs_other = sum(states.values())
    async with sim.client() as reader:
        leads = [lead async for lead in reader.leads.iter()]
        tasks = [t async for t in reader.tasks.iter()]
    per_lead = Counter(t.lead_id for t in tasks)
    figures.lost = sum(1 for lead in leads if per_lead[lead.id] == 0)
    figures.duplicated = sum(1 for lead in leads if per_lead[lead.id] > 1)
    return figures
