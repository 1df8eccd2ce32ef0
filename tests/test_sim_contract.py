"""Contract suite: every catalog endpoint, through CloseClient, against the simulator.

Each scenario sets up what its endpoint needs, calls it through ``CloseClient.call`` (real
HTTP semantics over ``httpx.ASGITransport``), and the shared checks assert the answer
parses as the endpoint's result (and item) model and that the endpoint's webhook events
were logged by the same request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from closeguard.simulator import Simulator
from closeguard.simulator.clock import FakeClock
from closeguard.tools.catalog import BY_NAME, ENDPOINTS
from closeguard.tools.client import CloseClient

Scenario = Callable[[Simulator, CloseClient], Awaitable[Any]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(*names: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        for name in names:
            SCENARIOS[name] = fn
        return fn

    return register


def any_id(sim: Simulator, collection: str, **match: Any) -> str:
    for obj in sim.state[collection].values():
        if all(obj.get(k) == v for k, v in match.items()):
            return str(obj["id"])
    raise AssertionError(f"no {collection} matching {match}")


async def call(client: CloseClient, name: str, **kwargs: Any) -> Any:
    return await client.call(name, **kwargs)


def one(client: CloseClient, name: str, obj_id: str, **kwargs: Any) -> Awaitable[Any]:
    return client.call(name, path_params={"id": obj_id}, **kwargs)


# -- leads ---------------------------------------------------------------------------------


@scenario("lead.list")
async def _lead_list(sim: Simulator, c: CloseClient) -> Any:
    return await call(c, "lead.list", params={"_limit": 2})


@scenario("lead.get")
async def _lead_get(sim: Simulator, c: CloseClient) -> Any:
    return await one(c, "lead.get", any_id(sim, "leads"))


@scenario("lead.create")
async def _lead_create(sim: Simulator, c: CloseClient) -> Any:
    return await call(c, "lead.create", json={"name": "Contract Co"})


@scenario("lead.update")
async def _lead_update(sim: Simulator, c: CloseClient) -> Any:
    return await one(c, "lead.update", any_id(sim, "leads"), json={"description": "x"})


@scenario("lead.delete")
async def _lead_delete(sim: Simulator, c: CloseClient) -> Any:
    return await one(c, "lead.delete", any_id(sim, "leads"))


@scenario("lead.merge")
async def _lead_merge(sim: Simulator, c: CloseClient) -> Any:
    source, dest = list(sim.state["leads"])[:2]
    return await call(c, "lead.merge", json={"source": source, "destination": dest})


# -- contacts, opportunities, tasks (same shape) ------------------------------------------

_PLAIN = {
    "contact": ("contacts", {"name": "Ada"}, {"title": "CTO"}),
    "opportunity": ("opportunities", {"value": 1000}, {"confidence": 40}),
    "task": ("tasks", {"text": "Call back"}, {"text": "Call back later"}),
}


def _crud(name: str, create: dict[str, Any], update: dict[str, Any], action: str) -> Scenario:
    """A scenario for ``name.action`` on a resource created on a lead first."""

    async def run(sim: Simulator, c: CloseClient) -> Any:
        lead_id = any_id(sim, "leads")
        made = await call(c, f"{name}.create", json={"lead_id": lead_id, **create})
        if action == "create":
            return made
        if action == "list":
            return await call(c, f"{name}.list", params={"lead_id": lead_id})
        if action == "get":
            return await one(c, f"{name}.get", made["id"])
        if action == "update":
            return await one(c, f"{name}.update", made["id"], json=update)
        return await one(c, f"{name}.delete", made["id"])

    return run


def _plain(resource: str, action: str) -> Scenario:
    _collection, create, update = _PLAIN[resource]
    return _crud(resource, create, update, action)


for _res in _PLAIN:
    for _action in ("list", "get", "create", "update", "delete"):
        SCENARIOS[f"{_res}.{_action}"] = _plain(_res, _action)


@scenario("task.bulk_update")
async def _task_bulk(sim: Simulator, c: CloseClient) -> Any:
    lead_id = any_id(sim, "leads")
    ids = [
        (await call(c, "task.create", json={"lead_id": lead_id, "text": f"t{i}"}))["id"]
        for i in range(2)
    ]
    return await call(
        c, "task.bulk_update", params={"id__in": ",".join(ids)}, json={"is_complete": True}
    )


# -- activities ----------------------------------------------------------------------------

_ACTIVITY_BODIES = {
    "note": ({"note": "hello"}, {"note": "hello again"}),
    "call": ({"direction": "outbound", "duration": 60}, {"note": "left voicemail"}),
    "email": ({"subject": "Hi", "to": ["a@b.example"], "status": "draft"}, {"status": "outbox"}),
}


def _activity(kind: str, action: str) -> Scenario:
    create, update = _ACTIVITY_BODIES[kind]
    return _crud(f"activity.{kind}", create, update, action)


for _kind in _ACTIVITY_BODIES:
    for _action in ("list", "get", "create", "update", "delete"):
        SCENARIOS[f"activity.{_kind}.{_action}"] = _activity(_kind, _action)


@scenario("activity.list")
async def _activity_list(sim: Simulator, c: CloseClient) -> Any:
    return await call(c, "activity.list", params={"_limit": 5})


# -- custom fields -------------------------------------------------------------------------


def _custom_field(obj: str, action: str) -> Scenario:
    async def run(sim: Simulator, c: CloseClient) -> Any:
        res = f"custom_field.{obj}"
        made = await call(
            c, f"{res}.create", json={"name": "Tier", "type": "choices", "choices": ["A", "B"]}
        )
        if action == "create":
            return made
        if action == "list":
            return await call(c, f"{res}.list")
        if action == "get":
            return await one(c, f"{res}.get", made["id"])
        if action == "update":
            return await one(c, f"{res}.update", made["id"], json={"choices": ["A", "B", "C"]})
        return await one(c, f"{res}.delete", made["id"])

    return run


for _obj in ("lead", "contact", "opportunity", "activity"):
    for _action in ("list", "get", "create", "update", "delete"):
        SCENARIOS[f"custom_field.{_obj}.{_action}"] = _custom_field(_obj, _action)


# -- webhooks ------------------------------------------------------------------------------


def _webhook(action: str) -> Scenario:
    async def run(sim: Simulator, c: CloseClient) -> Any:
        made = await call(
            c,
            "webhook.create",
            json={
                "url": "https://hooks.example/close",
                "events": [{"object_type": "lead", "action": "created"}],
            },
        )
        if action == "create":
            return made
        if action == "list":
            return await call(c, "webhook.list")
        if action == "get":
            return await one(c, "webhook.get", made["id"])
        if action == "update":
            return await one(c, "webhook.update", made["id"], json={"status": "paused"})
        return await one(c, "webhook.delete", made["id"])

    return run


for _action in ("list", "get", "create", "update", "delete"):
    SCENARIOS[f"webhook.{_action}"] = _webhook(_action)


# -- reference data, users, organization, events, search ----------------------------------


def _plain_call(name: str) -> Scenario:
    async def run(sim: Simulator, c: CloseClient) -> Any:
        return await call(c, name)

    return run


for _name in (
    "status.lead.list",
    "status.opportunity.list",
    "pipeline.list",
    "user.me",
    "user.list",
):
    SCENARIOS[_name] = _plain_call(_name)


@scenario("user.get")
async def _user_get(sim: Simulator, c: CloseClient) -> Any:
    return await one(c, "user.get", any_id(sim, "users"))


@scenario("organization.get")
async def _org_get(sim: Simulator, c: CloseClient) -> Any:
    return await one(c, "organization.get", sim.state.organization_id)


@scenario("organization.update")
async def _org_update(sim: Simulator, c: CloseClient) -> Any:
    return await one(
        c, "organization.update", sim.state.organization_id, json={"name": "Renamed Co"}
    )


@scenario("event.list")
async def _event_list(sim: Simulator, c: CloseClient) -> Any:
    await call(c, "lead.create", json={"name": "Evented"})
    return await call(c, "event.list", params={"object_type": "lead", "action": "created"})


@scenario("event.get")
async def _event_get(sim: Simulator, c: CloseClient) -> Any:
    await call(c, "lead.create", json={"name": "Evented"})
    return await one(c, "event.get", sim.events[-1]["id"])


@scenario("data.search")
async def _search(sim: Simulator, c: CloseClient) -> Any:
    name = next(iter(sim.state["leads"].values()))["name"]
    return await call(
        c,
        "data.search",
        json={
            "query": {
                "type": "and",
                "queries": [
                    {"type": "object_type", "object_type": "lead"},
                    {"type": "text", "value": name},
                ],
            },
            "_fields": {"lead": ["id", "name"]},
        },
    )


# -- the suite -----------------------------------------------------------------------------


def test_every_catalog_endpoint_has_a_scenario() -> None:
    assert set(SCENARIOS) == {ep.name for ep in ENDPOINTS}
    assert len(SCENARIOS) == len(ENDPOINTS) == 74


@pytest.mark.parametrize("name", [ep.name for ep in ENDPOINTS])
async def test_endpoint_contract(name: str) -> None:
    ep = BY_NAME[name]
    sim = Simulator(seed=3, leads=3, clock=FakeClock())
    async with sim.client() as client:
        seen_before = sim.request_count[name]
        events_before = len(sim.events)
        result = await SCENARIOS[name](sim, client)
    assert sim.request_count[name] > seen_before
    parsed = ep.result_model.model_validate(result)
    if ep.item_model is not None:
        items = result["data"]
        assert isinstance(items, list)
        for item in items:
            ep.item_model.model_validate(item)
        if ep.paging == "offset":
            assert isinstance(result["has_more"], bool)
    if ep.method == "DELETE":
        assert result == {}
    elif "data" not in result:
        assert str(parsed.model_dump().get("id", "")).split("_")[0] in _PREFIXES
    new_events = sim.events[events_before:]
    for event_name in ep.events[:1]:
        object_type, action = event_name.rsplit(".", 1)
        assert any(e["object_type"] == object_type and e["action"] == action for e in new_events), (
            f"{name} logged no {event_name}"
        )
    if ep.access == "read" and name not in ("event.list", "event.get"):
        assert all(e["meta"]["request_method"] != "GET" for e in new_events)


_PREFIXES = {"lead", "cont", "oppo", "acti", "task", "user", "orga", "cf", "whsub", "ev"}
