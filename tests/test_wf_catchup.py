"""Event Log catch-up (workflows/catchup.py): missed events reach the inbox exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.store.cursors import CATCHUP_POSITION, Cursors
from closeguard.tools import CloseClient, FakeClock, PolicyViolation
from closeguard.workflows.catchup import CatchUp
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.receiver import WebhookReceiver
from tests._hooks import lead_created_flow, subscribe_lead_created

HOUR = 3600.0


class MemoryInbox:
    """The inbox's ``add`` contract in memory; ``added`` counts every call."""

    def __init__(self) -> None:
        self.events: dict[str, Mapping[str, Any]] = {}
        self.added = 0

    async def add(self, event: Mapping[str, Any], *, source: str) -> bool:
        self.added += 1
        if event["id"] in self.events:
            return False
        self.events[event["id"]] = event
        return True

    async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
        return sum([await self.add(e, source=source) for e in events])


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on, keeping each one's query parameters."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.queries: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/event/"):
            self.queries.append(dict(request.url.params))
        return await self.inner.handle_async_request(request)


def setup(store: Store, **kwargs: Any) -> tuple[Simulator, FakeClock, Recording, CatchUp, Any]:
    clock = FakeClock()
    sim = Simulator(seed=1, leads=3, clock=clock)
    recording = Recording(sim.transport())
    client = sim.client(transport=recording)
    inbox = MemoryInbox()
    catchup = CatchUp(client, inbox, Cursors(store), clock=clock, **kwargs)
    return sim, clock, recording, catchup, inbox


async def create_leads(sim: Simulator, *names: str) -> list[str]:
    async with sim.client() as client:
        return [(await client.post("/lead/", json={"name": n}))["id"] for n in names]


async def test_events_missed_while_the_receiver_was_down_are_stored_once(store: Store) -> None:
    sim, clock, _, catchup, inbox = setup(store)
    async with sim.client() as client:
        hook = await subscribe_lead_created(client)
    await catchup.run_once()  # the runtime started: the position is now
    leads = await create_leads(sim, "Missed A", "Missed B", "Missed C")
    await sim.webhooks.run_due()  # nothing listens at hooks.test: every attempt fails
    assert all(not a.ok for d in sim.webhooks.deliveries for a in d.attempts)

    result = await catchup.run_once()
    created = {e["object_id"] for e in inbox.events.values() if e["action"] == "created"}
    assert set(leads) <= created
    assert result.stored == len(inbox.events) and inbox.added == result.read

    again = await catchup.run_once()  # the overlap re-reads them: nothing new
    assert again.read >= 3 and again.stored == 0

    receiver = WebhookReceiver(inbox, [hook["signature_key"]], clock=clock)
    sim.webhooks.mount("http://hooks.test", receiver)
    before = dict(inbox.events)
    await sim.webhooks.drain()  # the receiver is back; Close's retries arrive late
    assert receiver.stats["stored"] == 3 and receiver.group.new == 0
    assert inbox.events == before


async def test_the_position_moves_only_after_the_events_are_stored(store: Store) -> None:
    sim, _, _, catchup, _ = setup(store)
    await create_leads(sim, "One", "Two")

    class FailingInbox(MemoryInbox):
        async def add(self, event: Mapping[str, Any], *, source: str) -> bool:
            if self.added == 1:
                raise OSError("store went away")
            return await super().add(event, source=source)

    failing = FailingInbox()
    catchup.inbox = failing
    with pytest.raises(OSError):
        await catchup.run_once()
    assert await Cursors(store).aget(CATCHUP_POSITION) is None
    good = MemoryInbox()
    catchup.inbox = good
    await catchup.run_once()
    names = {e["data"]["name"] for e in good.events.values() if e["object_type"] == "lead"}
    assert {"One", "Two"} <= names
    assert await Cursors(store).aget(CATCHUP_POSITION) is not None


async def test_a_late_event_inside_the_overlap_is_caught(store: Store) -> None:
    sim, clock, _, catchup, inbox = setup(store)
    await create_leads(sim, "Early")
    first = await catchup.run_once()
    clock.advance(30)
    late_time = datetime.fromisoformat(first.position) - timedelta(minutes=2)
    late = {**sim.events[-1], "id": "ev_late", "date_updated": late_time.isoformat()}
    sim.log.append(late)
    result = await catchup.run_once()
    assert result.stored == 1 and "ev_late" in inbox.events


async def test_events_are_stored_oldest_first_and_a_long_gap_is_read_in_slices(
    store: Store,
) -> None:
    sim, clock, recording, catchup, inbox = setup(store, slice_length=timedelta(hours=1))
    start = datetime.fromtimestamp(clock.now(), UTC)
    await Cursors(store).aset(CATCHUP_POSITION, start.isoformat())
    ids = []
    for name in ("h0", "h1", "h2", "h3"):
        ids += await create_leads(sim, name)
        clock.advance(HOUR)
    result = await catchup.run_once()
    order = [e["object_id"] for e in inbox.events.values() if e["object_type"] == "lead"]
    assert order == ids
    assert len(recording.queries) >= 4, "one request per hour slice at least"
    assert all(
        set(q) <= {"date_updated__gte", "date_updated__lt", "_limit", "_cursor"}
        for q in recording.queries
    )
    newest = max(e["date_updated"] for e in sim.events)
    assert datetime.fromisoformat(result.position) == datetime.fromisoformat(newest)


async def test_pages_are_followed_with_the_cursor(store: Store) -> None:
    sim, _, recording, catchup, inbox = setup(store, page_size=2)
    await create_leads(sim, *(f"Paged {i}" for i in range(5)))
    await catchup.run_once()
    assert sum(1 for e in inbox.events.values() if e["object_type"] == "lead") == 5
    assert [bool(q.get("_cursor")) for q in recording.queries][:2] == [False, True]


async def test_never_further_back_than_the_retention(store: Store) -> None:
    _, clock, recording, catchup, _ = setup(store)
    long_ago = datetime.fromtimestamp(clock.now(), UTC) - timedelta(days=45)
    await Cursors(store).aset(CATCHUP_POSITION, long_ago.isoformat())
    await catchup.run_once()
    earliest = min(datetime.fromisoformat(q["date_updated__gte"]) for q in recording.queries)
    now = datetime.fromtimestamp(clock.now(), UTC)
    assert now - timedelta(days=30) <= earliest < now - timedelta(days=29)


async def test_a_first_start_does_not_replay_history(store: Store) -> None:
    sim, clock, _, catchup, inbox = setup(store)
    await create_leads(sim, "Old news")
    clock.advance(HOUR)
    result = await catchup.run_once()
    assert result.read == 0 and inbox.events == {}


async def test_wanted_filters_what_is_stored(store: Store) -> None:
    sim, _, _, catchup, inbox = setup(store, wanted=lambda e: e["object_type"] == "lead")
    await create_leads(sim, "Only leads")
    result = await catchup.run_once()
    assert result.read > 0 and {e["object_type"] for e in inbox.events.values()} == {"lead"}


async def test_reads_go_through_the_guard(store: Store) -> None:
    sim = Simulator(seed=1, leads=1, clock=FakeClock())
    await create_leads(sim, "Guarded")

    def client(policy: Policy) -> CloseClient:
        guarded = Guarded(policy, store=store)
        return sim.client(policy=guarded, actor="closeguard-intake")

    intake = CatchUp(
        client(Policy.load("event-intake")), MemoryInbox(), Cursors(store), clock=sim.clock
    )
    assert (await intake.run_once()).stored > 0
    no_events = Policy.from_dict({"name": "no-events", "grants": {"lead": "read"}})
    refused = CatchUp(client(no_events), MemoryInbox(), Cursors(store), clock=sim.clock)
    with pytest.raises(PolicyViolation):
        await refused.run_once()


async def test_run_forever_outlives_a_failing_pass(store: Store) -> None:
    clock = FakeClock(auto_advance=False)
    sim = Simulator(seed=1, leads=1, clock=clock)
    await create_leads(sim, "Retried")

    class FlakyInbox(MemoryInbox):
        failures = 1

        async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
            if self.failures:
                self.failures -= 1
                raise OSError("database is locked")
            return await super().add_many(events, source=source)

    inbox = FlakyInbox()
    catchup = CatchUp(sim.client(), inbox, Cursors(store), clock=clock)
    task = asyncio.create_task(catchup.run_forever(every=60))
    try:
        await until(lambda: inbox.failures == 0)
        await settle()
        assert catchup.passes == 0 and not task.done()
        catchup.trigger()
        await until(lambda: catchup.passes == 1)
        assert inbox.events
    finally:
        task.cancel()


async def test_run_forever_passes_on_start_every_minute_and_when_triggered(store: Store) -> None:
    clock = FakeClock(auto_advance=False)
    sim = Simulator(seed=1, leads=1, clock=clock)
    catchup = CatchUp(sim.client(), MemoryInbox(), Cursors(store), clock=clock)
    task = asyncio.create_task(catchup.run_forever(every=60))

    async def passes(n: int) -> None:
        await until(lambda: catchup.passes >= n)
        await settle()  # let it go back to sleep on the clock

    try:
        await passes(1)
        clock.advance(59)
        await asyncio.sleep(0)
        assert catchup.passes == 1
        clock.advance(1)
        await passes(2)
        catchup.trigger()
        await passes(3)
    finally:
        task.cancel()


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait, polling with a bound, for what the store's thread finishes on its own time."""
    for _ in range(int(within * 1000)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("not reached in time")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_with_the_real_inbox_each_missed_event_is_one_run(store: Store) -> None:
    """Webhooks failing, then catch-up (twice, overlapping), then the late webhook retries:
    each missed lead gets exactly one stored event and one run."""
    clock = FakeClock()
    sim = Simulator(seed=1, leads=2, clock=clock)
    flow = lead_created_flow()
    inbox = Inbox(store, [flow])
    cursors = Cursors(store)
    catchup = CatchUp(sim.client(), inbox, cursors, clock=clock)
    async with sim.client() as client:
        hook = await subscribe_lead_created(client)
    await catchup.run_once()
    leads = await create_leads(sim, "Lost 1", "Lost 2", "Lost 3")
    await sim.webhooks.run_due()  # the receiver is down: nothing listens
    await catchup.run_once()
    clock.advance(60)
    await catchup.run_once()
    sim.webhooks.mount(
        "http://hooks.test", WebhookReceiver(inbox, [hook["signature_key"]], clock=clock)
    )
    await sim.webhooks.drain()

    runs = await inbox.queue.list(workflow="on-new-lead", limit=100)
    assert sorted(r.lead_id or "" for r in runs) == sorted(leads)
    assert all(inbox.rows.get(r.trigger_key) is not None for r in runs)
    sources = {inbox.rows.get(r.trigger_key).source for r in runs}  # type: ignore[union-attr]
    assert sources == {"catchup"}
