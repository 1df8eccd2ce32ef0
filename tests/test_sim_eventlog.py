"""Close's Event Log rules: supported filter combinations, cursors bound to their filters,
and merge meta on every event a merge causes."""

from __future__ import annotations

from typing import Any

import pytest

from closeguard.simulator import Simulator
from closeguard.simulator.clock import FakeClock
from closeguard.simulator.events import EQUALITY_FILTERS, SUPPORTED_FILTERS


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=11, leads=3, clock=FakeClock(), rate_limits=None)


@pytest.fixture
async def http(sim: Simulator) -> Any:
    async with sim.http_client() as client:
        yield client


async def _events(http: Any) -> list[dict[str, Any]]:
    lead = (await http.post("/lead/", json={"name": "E", "contacts": [{"name": "c"}]})).json()
    await http.put(f"/lead/{lead['id']}/", json={"name": "E2"})
    return (await http.get("/event/")).json()["data"]  # type: ignore[no-any-return]


def _values(event: dict[str, Any], combination: frozenset[str]) -> dict[str, str]:
    return {k: str(event[k]) for k in combination}


async def test_every_documented_combination_is_accepted(sim: Simulator, http: Any) -> None:
    contact_created = next(e for e in await _events(http) if e["object_type"] == "contact")
    since = {"date_updated__gte": contact_created["date_updated"]}
    for combination in SUPPORTED_FILTERS:
        for extra in ({}, since):
            params = {**_values(contact_created, combination), **extra}
            r = await http.get("/event/", params=params)
            assert r.status_code == 200, (params, r.text)
            assert contact_created["id"] in {e["id"] for e in r.json()["data"]}, params


@pytest.mark.parametrize(
    "combination",
    [
        ("object_type",),
        ("action",),
        ("object_id",),
        ("lead_id", "action"),
        ("request_id", "lead_id"),
        ("object_type", "object_id", "action"),
        EQUALITY_FILTERS,
    ],
)
async def test_other_combinations_are_refused_naming_the_supported_ones(
    http: Any, combination: tuple[str, ...]
) -> None:
    event = (await _events(http))[0]
    r = await http.get("/event/", params=_values(event, frozenset(combination)))
    assert r.status_code == 400
    body = r.json()
    assert set(body) == {"error", "errors", "field-errors"}
    assert "Unsupported combination of filters" in body["error"]
    assert "object_type + action" in body["error"] and "request_id" in body["error"]


async def test_a_cursor_is_bound_to_its_filters(sim: Simulator, http: Any) -> None:
    for i in range(4):
        await http.post("/lead/", json={"name": f"P{i}"})
    params = {"object_type": "lead", "action": "created", "_limit": 2}
    first = (await http.get("/event/", params=params)).json()
    cursor = first["cursor_next"]
    again = await http.get("/event/", params={**params, "_cursor": cursor})
    assert again.status_code == 200
    since = {"date_updated__gte": "2000-01-01T00:00:00+00:00"}
    moved_dates = await http.get("/event/", params={**params, **since, "_cursor": cursor})
    assert moved_dates.status_code == 200, "date_updated filters may change with a cursor"
    for other in ({"object_type": "contact", "action": "created"}, {}):
        r = await http.get("/event/", params={**other, "_limit": 2, "_cursor": cursor})
        assert r.status_code == 400, other
        assert "issued for other filters" in r.json()["field-errors"]["_cursor"]
    previous = first["cursor_previous"]
    r = await http.get(
        "/event/", params={"user_id": sim.state.ids.new("user"), "_cursor": previous}
    )
    assert r.status_code == 400


async def test_every_event_of_a_merge_carries_both_lead_ids(sim: Simulator, http: Any) -> None:
    source, dest = list(sim.state["leads"])[:2]
    await http.post("/task/", json={"lead_id": source, "text": "carry me"})
    await http.post("/activity/note/", json={"lead_id": source, "note": "and me"})
    before = len(sim.events)
    r = await http.post("/lead/merge/", json={"source": source, "destination": dest})
    assert r.status_code == 200
    caused = sim.events[before:]
    kinds = {(e["object_type"], e["action"]) for e in caused}
    assert {("lead", "deleted"), ("lead", "merged"), ("task", "updated")} <= kinds
    assert ("activity.note", "updated") in kinds and ("contact", "updated") in kinds
    for event in caused:
        meta = event["meta"]
        assert meta["merge_source_lead_id"] == source, event["object_type"]
        assert meta["merge_destination_lead_id"] == dest, event["object_type"]
    other = (await http.post("/lead/", json={"name": "Unrelated"})).json()
    created = next(e for e in sim.events if e["object_id"] == other["id"])
    assert "merge_source_lead_id" not in created["meta"]
