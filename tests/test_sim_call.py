"""``Simulator.call``: a catalog endpoint run straight on the state (seeding large worlds)
makes exactly what the same request over the API makes, and refuses what it refuses."""

from __future__ import annotations

import pytest

from closeguard.simulator import FakeClock, Simulator
from closeguard.simulator._context import ApiError
from closeguard.simulator.state import Obj


def pair() -> tuple[Simulator, Simulator]:
    """Two identical organizations on the same fake time."""
    return (
        Simulator(seed=4, leads=3, clock=FakeClock(start=1_800_000_000.0)),
        Simulator(seed=4, leads=3, clock=FakeClock(start=1_800_000_000.0)),
    )


async def test_a_call_makes_the_objects_ids_and_events_a_request_makes() -> None:
    over_http, direct = pair()
    lead_id = next(iter(over_http.state["leads"]))
    async with over_http.http_client() as http:
        created = (await http.post("/lead/", json={"name": "Acme", "url": "https://a.io"})).json()
        updated = (await http.put(f"/lead/{lead_id}/", json={"name": "Renamed"})).json()
        await http.post("/task/", json={"lead_id": lead_id, "text": "Call back"})

    assert direct.call("lead.create", {"name": "Acme", "url": "https://a.io"}) == created
    assert direct.call("lead.update", {"name": "Renamed"}, path_params={"id": lead_id}) == updated
    direct.call("task.create", {"lead_id": lead_id, "text": "Call back"})

    assert direct.state_hash() == over_http.state_hash()
    assert direct.events == over_http.events
    assert [e["meta"]["request_path"] for e in direct.events] == [
        "/api/v1/lead/",
        f"/api/v1/lead/{lead_id}/",
        "/api/v1/task/",
    ]


def test_a_read_returns_the_body_a_request_would() -> None:
    sim = Simulator(seed=4, leads=3)
    lead_id = next(iter(sim.state["leads"]))
    assert sim.call("lead.get", path_params={"id": lead_id})["id"] == lead_id
    page = sim.call("lead.list", query={"_limit": "1"})
    assert page["total_results"] == 3 and len(page["data"]) == 1


def test_a_refused_call_raises_and_changes_nothing() -> None:
    sim = Simulator(seed=4, leads=3)
    before, counter = sim.state_hash(), sim.state.ids.counter
    with pytest.raises(ApiError) as refused:
        sim.call("task.create", {"lead_id": "lead_missing", "text": "x"})
    assert refused.value.status == 400 and "lead_id" in refused.value.field_errors
    with pytest.raises(ApiError) as missing:
        sim.call("lead.get", path_params={"id": "lead_missing"})
    assert missing.value.status == 404
    assert sim.state_hash() == before and sim.state.ids.counter == counter
    assert sim.events == []


def test_listeners_see_the_events_and_no_request_is_counted_or_charged() -> None:
    seen: list[Obj] = []
    sim = Simulator(seed=4, leads=0, on_event=seen.append)
    for i in range(3):
        sim.call("lead.create", {"name": f"Lead {i}"})
    assert [(e["object_type"], e["action"]) for e in seen] == [("lead", "created")] * 3
    assert seen == sim.events
    assert sim.request_count["total"] == 0
    assert sim.limiter is not None and sum(sim.limiter.allowed.values()) == 0
