"""The client against the simulator (ASGI, in process): paging, pacing under rate limits."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from closeguard.simulator import Simulator
from closeguard.simulator.clock import FakeClock
from closeguard.simulator.faults import FaultConfig
from closeguard.simulator.ratelimit import RateLimits


class StatusCounter:
    """A guard-shaped wrapper that only counts the statuses coming back."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()

    def wrap(
        self, transport: httpx.AsyncBaseTransport, *, actor: str | None, run_id: str | None
    ) -> httpx.AsyncBaseTransport:
        counter = self

        class Counting(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                response = await transport.handle_async_request(request)
                counter.statuses[response.status_code] += 1
                return response

        return Counting()


async def test_iter_create_and_search_against_the_simulator() -> None:
    sim = Simulator(seed=3, leads=230)
    async with sim.client() as close:
        ids = [lead.id async for lead in close.leads.iter(page_size=100)]
        assert len(ids) == len(set(ids)) == 230
        created = await close.leads.create({"name": "Acme Integration"})
        assert (await close.leads.get(created.id)).name == "Acme Integration"
        query = {"type": "object_type", "object_type": "lead"}
        found = [row["id"] async for row in close.search.iter(query, page_size=50)]
        assert created.id in found and len(found) == 231


async def test_concurrent_burst_under_rate_limits_all_succeed_with_few_429s() -> None:
    clock = FakeClock()
    sim = Simulator(seed=4, leads=5, clock=clock, rate_limits=RateLimits(rps=5))
    counter = StatusCounter()
    async with sim.client(policy=counter) as close:
        lead_id = next(iter(sim.state["leads"]))
        results = await asyncio.gather(*(close.leads.get(lead_id) for _ in range(60)))
        notes = await asyncio.gather(
            *(close.notes.create({"lead_id": lead_id, "note": f"n{i}"}) for i in range(20))
        )
    assert {lead.id for lead in results} == {lead_id}
    assert len({note.id for note in notes}) == 20
    assert counter.statuses[200] == 80
    # Pacing keeps each group under its window; at most the first burst can hit a 429.
    assert counter.statuses[429] <= 5, counter.statuses


async def test_rate_limited_burst_on_a_fake_clock_costs_no_real_sleep() -> None:
    """``Simulator.client()`` hands its clock over: pacing and 429 waits cost fake time only."""
    clock = FakeClock()
    sim = Simulator(
        seed=4,
        leads=3,
        clock=clock,
        rate_limits=RateLimits(rps=5),
        faults=FaultConfig.everywhere(error_429=0.3),
    )
    counter = StatusCounter()
    lead_id = next(iter(sim.state["leads"]))
    wall_start, fake_start = time.perf_counter(), clock.monotonic()
    async with sim.client(policy=counter) as close:
        assert close.clock is clock
        await asyncio.gather(*(close.leads.get(lead_id) for _ in range(50)))
    wall = time.perf_counter() - wall_start
    assert counter.statuses[200] == 50 and counter.statuses[429] >= 5, counter.statuses
    assert clock.monotonic() - fake_start >= 50 / 5 - 1  # the waits, on fake time
    # Slept for real, the waits alone would take over 9 s; a loaded CI machine needs slack.
    assert wall < 3, f"{wall:.2f}s of real time"
