"""Simulator semantics that workflows rely on, the Event Log, and refusals of bad input."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.simulator import Simulator
from closeguard.simulator.clock import FakeClock
from closeguard.tools.catalog import ENDPOINTS

ID_RE = re.compile(r"^lead_[0-9A-Za-z]{43}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(seed=7, leads=6, clock=clock)


@pytest.fixture
async def http(sim: Simulator) -> Any:
    async with sim.http_client() as client:
        yield client


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["object_type"], e["action"]) for e in events]


def status_id(sim: Simulator, label: str, collection: str = "lead_statuses") -> str:
    return next(s["id"] for s in sim.state[collection].values() if s["label"] == label)


async def new_lead(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/lead/", json={"name": "Acme Corp", **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# -- shapes --------------------------------------------------------------------------------


async def test_lead_create_shape_and_nested_contacts(sim: Simulator, http: Any) -> None:
    lead = await new_lead(
        http,
        contacts=[
            {"name": "Ann", "emails": [{"email": "ann@acme.example"}]},
            {"name": "Bob"},
        ],
    )
    assert ID_RE.match(lead["id"])
    assert TS_RE.match(lead["date_created"]) and lead["date_updated"] == lead["date_created"]
    assert lead["organization_id"] == sim.state.organization_id
    assert lead["created_by"] == lead["updated_by"] == sim.state.api_keys[sim.api_key].user_id
    assert lead["status_label"] == "Potential"
    assert [c["name"] for c in lead["contacts"]] == ["Ann", "Bob"]
    assert lead["contacts"][0]["emails"] == [{"email": "ann@acme.example", "type": "office"}]
    events = sim.events
    assert kinds(events) == [("lead", "created"), ("contact", "created"), ("contact", "created")]
    assert len({e["request_id"] for e in events}) == 1
    event = events[0]
    assert set(event) == {
        "id",
        "date_created",
        "date_updated",
        "object_type",
        "object_id",
        "action",
        "lead_id",
        "organization_id",
        "user_id",
        "api_key_id",
        "request_id",
        "changed_fields",
        "previous_data",
        "data",
        "meta",
    }
    assert event["meta"] == {"request_method": "POST", "request_path": "/api/v1/lead/"}
    assert event["id"].startswith("ev_") and event["lead_id"] == lead["id"]


async def test_put_is_a_patch_and_fields_filter(http: Any) -> None:
    lead = await new_lead(http, description="keep me", url="https://acme.example")
    r = await http.put(f"/lead/{lead['id']}/", json={"name": "Acme Inc"})
    assert r.json()["description"] == "keep me" and r.json()["name"] == "Acme Inc"
    r = await http.get(f"/lead/{lead['id']}/", params={"_fields": "id,name"})
    assert r.json() == {"id": lead["id"], "name": "Acme Inc"}


async def test_auth_basic_bearer_and_refusals(sim: Simulator) -> None:
    transport = sim.transport()
    async with httpx.AsyncClient(transport=transport, base_url="http://x/api/v1") as raw:
        assert (await raw.get("/me/")).status_code == 401
        assert (await raw.get("/me/", auth=("nope", ""))).status_code == 401
        bearer = await raw.get("/me/", headers={"Authorization": f"Bearer {sim.api_key}"})
        assert bearer.status_code == 200
        second = sim.add_api_key("second-key", user_id=list(sim.state["users"])[1])
        me = (await raw.get("/me/", auth=(second, ""))).json()
        assert me["id"] == list(sim.state["users"])[1]
        assert me["organizations"][0]["id"] == sim.state.organization_id


# -- cascades, merge, status changes ------------------------------------------------------


async def test_lead_delete_cascades_with_events(sim: Simulator, http: Any) -> None:
    lead = await new_lead(http, contacts=[{"name": "Ann"}])
    await http.post("/opportunity/", json={"lead_id": lead["id"], "value": 500})
    await http.post("/task/", json={"lead_id": lead["id"], "text": "call"})
    await http.post("/activity/note/", json={"lead_id": lead["id"], "note": "hi"})
    await http.post("/activity/call/", json={"lead_id": lead["id"]})
    before = len(sim.events)
    assert (await http.delete(f"/lead/{lead['id']}/")).json() == {}
    deleted = sim.events[before:]
    assert sorted(kinds(deleted)) == sorted(
        [
            ("activity.note", "deleted"),
            ("activity.call", "deleted"),
            ("task", "deleted"),
            ("opportunity", "deleted"),
            ("contact", "deleted"),
            ("lead", "deleted"),
        ]
    )
    assert all(e["lead_id"] == lead["id"] for e in deleted)
    assert len({e["request_id"] for e in deleted}) == 1
    for collection in ("contacts", "opportunities", "tasks", "activities"):
        assert not [o for o in sim.state[collection].values() if o["lead_id"] == lead["id"]]
    assert (await http.get(f"/lead/{lead['id']}/")).status_code == 404


async def test_merge_moves_children_and_logs_merged(sim: Simulator, http: Any) -> None:
    source = await new_lead(http, name="Old", contacts=[{"name": "Moved"}])
    dest = await new_lead(http, name="New")
    await http.post("/task/", json={"lead_id": source["id"], "text": "t"})
    before = len(sim.events)
    r = await http.post("/lead/merge/", json={"source": source["id"], "destination": dest["id"]})
    assert r.status_code == 200
    assert [c["name"] for c in r.json()["contacts"]] == ["Moved"]
    assert source["id"] not in sim.state["leads"]
    assert all(t["lead_id"] == dest["id"] for t in sim.state["tasks"].values() if t["text"] == "t")
    events = sim.events[before:]
    merged = [e for e in events if e["action"] == "merged"]
    assert len(merged) == 1 and merged[0]["object_id"] == dest["id"]
    assert merged[0]["meta"]["merge_source_lead_id"] == source["id"]
    assert merged[0]["meta"]["merge_destination_lead_id"] == dest["id"]
    assert ("lead", "deleted") in kinds(events)
    assert ("contact", "updated") in kinds(events) and ("task", "updated") in kinds(events)
    bad = await http.post("/lead/merge/", json={"source": dest["id"], "destination": dest["id"]})
    assert bad.status_code == 400 and "destination" in bad.json()["field-errors"]


async def test_opportunity_status_change(sim: Simulator, http: Any, clock: FakeClock) -> None:
    lead = await new_lead(http)
    opp = (await http.post("/opportunity/", json={"lead_id": lead["id"], "value": 900})).json()
    assert opp["status_type"] == "active" and opp["date_won"] is None
    won = status_id(sim, "Won", "opportunity_statuses")
    before = len(sim.events)
    clock.advance(3600)
    r = await http.put(f"/opportunity/{opp['id']}/", json={"status_id": won})
    body = r.json()
    assert body["status_type"] == "won" and body["status_label"] == "Won"
    assert body["date_won"] == body["date_updated"][:10] and body["value"] == 900
    events = sim.events[before:]
    updated = next(e for e in events if e["object_type"] == "opportunity")
    assert updated["action"] == "updated" and "status_id" in updated["changed_fields"]
    assert updated["previous_data"]["status_id"] == opp["status_id"]
    change = next(e for e in events if e["object_type"] == "activity.opportunity_status_change")
    assert change["action"] == "created"
    activity = sim.state["activities"][change["object_id"]]
    assert activity["_type"] == "OpportunityStatusChange"
    assert (activity["old_status_id"], activity["new_status_id"]) == (opp["status_id"], won)
    lost = status_id(sim, "Lost", "opportunity_statuses")
    body = (await http.put(f"/opportunity/{opp['id']}/", json={"status_id": lost})).json()
    assert body["date_lost"] and body["date_won"] is None and body["status_type"] == "lost"


async def test_task_complete_and_bulk_update(sim: Simulator, http: Any) -> None:
    lead = await new_lead(http)
    tasks = [
        (await http.post("/task/", json={"lead_id": lead["id"], "text": f"t{i}"})).json()
        for i in range(3)
    ]
    before = len(sim.events)
    r = await http.put(f"/task/{tasks[0]['id']}/", json={"is_complete": True})
    assert r.json()["is_complete"] is True
    assert kinds(sim.events[before:]) == [("task", "updated"), ("task", "completed")]
    before = len(sim.events)
    ids = ",".join(t["id"] for t in tasks[1:])
    r = await http.put("/task/", params={"id__in": ids}, json={"is_complete": True})
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    assert kinds(sim.events[before:]) == [("task", "updated"), ("task", "completed")] * 2
    listed = await http.get("/task/", params={"lead_id": lead["id"], "is_complete": "true"})
    assert len(listed.json()["data"]) == 3
    unfiltered = await http.put("/task/", json={"is_complete": False})
    assert unfiltered.status_code == 400


async def test_email_outbox_is_sent(sim: Simulator, http: Any) -> None:
    lead = await new_lead(http)
    r = await http.post(
        "/activity/email/",
        json={"lead_id": lead["id"], "to": ["x@acme.example"], "subject": "Hi", "status": "outbox"},
    )
    email = r.json()
    assert email["status"] == "sent" and email["date_sent"]
    assert kinds(sim.events[-2:]) == [("activity.email", "created"), ("activity.email", "sent")]
    draft = (
        await http.post(
            "/activity/email/",
            json={"lead_id": lead["id"], "to": ["x@acme.example"], "status": "draft"},
        )
    ).json()
    assert draft["status"] == "draft" and sim.events[-1]["action"] == "created"
    sent = (await http.put(f"/activity/email/{draft['id']}/", json={"status": "outbox"})).json()
    assert sent["status"] == "sent"
    assert kinds(sim.events[-2:]) == [("activity.email", "updated"), ("activity.email", "sent")]


async def test_custom_fields(sim: Simulator, http: Any) -> None:
    cf = (
        await http.post(
            "/custom_field/lead/",
            json={"name": "Tier", "type": "choices", "choices": ["Gold", "Silver"]},
        )
    ).json()
    assert cf["id"].startswith("cf_")
    lead = await new_lead(http, **{f"custom.{cf['id']}": "Gold"})
    assert lead[f"custom.{cf['id']}"] == "Gold"
    bad = await http.put(f"/lead/{lead['id']}/", json={f"custom.{cf['id']}": "Bronze"})
    assert bad.status_code == 400 and f"custom.{cf['id']}" in bad.json()["field-errors"]
    unknown = await http.put(f"/lead/{lead['id']}/", json={"custom.cf_doesnotexist": 1})
    assert unknown.status_code == 400
    await http.delete(f"/custom_field/lead/{cf['id']}/")
    assert f"custom.{cf['id']}" not in sim.state["leads"][lead["id"]]


async def test_lead_status_change_and_query(sim: Simulator, http: Any) -> None:
    lead = await new_lead(
        http,
        name="Zyzzyva Widgets",
        contacts=[{"name": "Quincy Q", "emails": [{"email": "q@zyz.example"}]}],
    )
    await http.put(f"/lead/{lead['id']}/", json={"status_id": status_id(sim, "Qualified")})
    assert sim.events[-1]["object_type"] == "activity.lead_status_change"

    async def found(query: str) -> list[str]:
        r = await http.get("/lead/", params={"query": query})
        assert r.status_code == 200 and r.json()["total_results"] == len(r.json()["data"])
        return [lead["id"] for lead in r.json()["data"]]

    assert await found("zyzzyva") == [lead["id"]]
    assert await found("Quincy") == [lead["id"]]
    assert await found("email:q@zyz.example") == [lead["id"]]
    assert lead["id"] in await found('status:"Qualified"')
    assert lead["id"] not in await found('lead_status:"Potential"')
    assert await found("name:Zyzzyva status:Qualified") == [lead["id"]]


async def test_list_paging_and_filters(sim: Simulator, http: Any) -> None:
    first = (await http.get("/lead/", params={"_limit": 4})).json()
    rest = (await http.get("/lead/", params={"_limit": 4, "_skip": 4})).json()
    assert first["has_more"] is True and rest["has_more"] is False
    assert len(first["data"]) + len(rest["data"]) == first["total_results"] == 6
    won = status_id(sim, "Won", "opportunity_statuses")
    opps = (await http.get("/opportunity/", params={"status_type": "won"})).json()["data"]
    assert all(o["status_id"] == won for o in opps)
    notes = (await http.get("/activity/", params={"_type": "Note"})).json()["data"]
    assert notes and all(a["_type"] == "Note" for a in notes)
    dates = [a["date_created"] for a in (await http.get("/activity/")).json()["data"]]
    assert dates == sorted(dates, reverse=True)


async def test_data_search_with_cursor(sim: Simulator, http: Any) -> None:
    for i in range(5):
        await new_lead(http, name=f"Searchable {i}")
    query = {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {"type": "text", "value": "searchable"},
        ],
    }
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        body: dict[str, Any] = {"query": query, "_limit": 2, "_fields": {"lead": ["id", "name"]}}
        if cursor:
            body["cursor"] = cursor
        page = (await http.post("/data/search/", json=body)).json()
        seen += [d["name"] for d in page["data"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"Searchable {i}" for i in range(5)]
    bad = await http.post("/data/search/", json={"query": {"type": "fuzzy"}})
    assert bad.status_code == 400


async def test_webhook_subscriptions(sim: Simulator, http: Any) -> None:
    body = {
        "url": "https://hooks.example/x",
        "events": [{"object_type": "lead", "action": "created"}],
    }
    hook = (await http.post("/webhook/", json=body)).json()
    assert re.fullmatch(r"[0-9a-f]{64}", hook["signature_key"])
    assert hook["id"].startswith("whsub_") and hook["status"] == "active"
    for _ in range(39):
        assert (await http.post("/webhook/", json=body)).status_code == 200
    over = await http.post("/webhook/", json=body)
    assert over.status_code == 400 and len(sim.state["webhooks"]) == 40
    bad = await http.post("/webhook/", json={"url": "ftp://x", "events": []})
    assert set(bad.json()["field-errors"]) == {"url", "events"}


async def test_organization_and_users(sim: Simulator, http: Any) -> None:
    org_id = sim.state.organization_id
    r = await http.put(f"/organization/{org_id}/", json={"name": "New Name"})
    assert r.json()["name"] == "New Name" and len(r.json()["memberships"]) == 4
    assert (await http.get("/organization/orga_other/")).status_code == 404
    users = (await http.get("/user/")).json()["data"]
    assert len(users) == 4
    assert (await http.get(f"/user/{users[1]['id']}/")).json()["email"] == users[1]["email"]


# -- the Event Log -------------------------------------------------------------------------


async def test_event_log_cursor_paging_is_stable(sim: Simulator, http: Any) -> None:
    for i in range(7):
        await new_lead(http, name=f"L{i}")
    page1 = (await http.get("/event/", params={"_limit": 3})).json()
    assert [e["data"]["name"] for e in page1["data"]] == ["L6", "L5", "L4"]
    await new_lead(http, name="late")
    page2 = (
        await http.get("/event/", params={"_limit": 3, "_cursor": page1["cursor_next"]})
    ).json()
    assert [e["data"]["name"] for e in page2["data"]] == ["L3", "L2", "L1"]
    page3 = (
        await http.get("/event/", params={"_limit": 3, "_cursor": page2["cursor_next"]})
    ).json()
    assert [e["data"]["name"] for e in page3["data"]] == ["L0"] and page3["cursor_next"] is None
    newer = (await http.get("/event/", params={"_cursor": page1["cursor_previous"]})).json()
    assert [e["data"]["name"] for e in newer["data"]] == ["late"]
    default = (await http.get("/event/")).json()
    assert len(default["data"]) == 8


async def test_event_log_filters_and_refusals(sim: Simulator, http: Any, clock: FakeClock) -> None:
    a = await new_lead(http, name="A", contacts=[{"name": "x"}])
    clock.advance(60)
    mark = sim.events[-1]["date_updated"]
    clock.advance(60)
    b = await new_lead(http, name="B")

    async def names(**params: Any) -> list[tuple[str, str]]:
        r = await http.get("/event/", params=params)
        assert r.status_code == 200, r.text
        return kinds(r.json()["data"])

    assert await names(object_type="contact", action="created") == [("contact", "created")]
    assert await names(lead_id=b["id"]) == [("lead", "created")]
    assert await names(object_id=a["id"], action="created") == [("lead", "created")]
    assert await names(date_updated__gt=mark) == [("lead", "created")]
    assert len(await names(date_updated__lte=mark)) == 2
    request_id = sim.events[0]["request_id"]
    assert len(await names(request_id=request_id)) == 2
    event = sim.events[0]
    assert (await http.get(f"/event/{event['id']}/")).json() == event
    for params in (
        {"_skip": 5},
        {"_limit": 51},
        {"_cursor": "garbage"},
        {"date_updated__gt": "yesterday"},
    ):
        r = await http.get("/event/", params=params)
        assert r.status_code == 400, params
        assert set(r.json()) == {"error", "errors", "field-errors"}


async def test_events_expire_after_30_days(sim: Simulator, http: Any, clock: FakeClock) -> None:
    await new_lead(http, name="old")
    old_id = sim.events[0]["id"]
    clock.advance(31 * 86400)
    await new_lead(http, name="new")
    data = (await http.get("/event/")).json()["data"]
    assert [e["data"]["name"] for e in data] == ["new"]
    assert (await http.get(f"/event/{old_id}/")).status_code == 404


async def test_on_event_listener_sees_committed_events() -> None:
    seen: list[str] = []
    sim = Simulator(seed=1, leads=1, clock=FakeClock(), on_event=lambda e: seen.append(e["action"]))
    async with sim.http_client() as http:
        await http.post("/lead/", json={"name": "x"})
        await http.post("/lead/", json={"name": "x", "status_id": "stat_nope"})
    assert seen == ["created"]


# -- bad input: right status and shape, state unchanged -----------------------------------

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    (
        "POST",
        "/lead/",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        400,
    ),
    ("POST", "/lead/", {"content": b"name=x", "headers": {"content-type": "text/plain"}}, 415),
    ("POST", "/lead/", {"json": ["a", "list"]}, 400),
    ("POST", "/lead/", {"json": {"name": 5}}, 400),
    ("POST", "/lead/", {"json": {"name": "x", "nmae": "typo"}}, 400),
    ("POST", "/lead/", {"json": {"name": "x", "status_id": "stat_unknown"}}, 400),
    ("POST", "/lead/", {"json": {"name": "x", "contacts": [{"emails": [{"email": "nope"}]}]}}, 400),
    ("POST", "/contact/", {"json": {"name": "no lead"}}, 400),
    ("POST", "/contact/", {"json": {"lead_id": "lead_missing"}}, 400),
    ("POST", "/opportunity/", {"json": {"lead_id": "LEAD", "confidence": 400}}, 400),
    ("POST", "/task/", {"json": {"lead_id": "LEAD", "is_complete": "maybe"}}, 400),
    ("POST", "/task/", {"json": {"lead_id": "LEAD", "assigned_to": "user_nobody"}}, 400),
    ("PUT", "/lead/LEAD/", {"json": {"status_id": None}}, 400),
    ("GET", "/lead/", {"params": {"_limit": 100000}}, 400),
    ("GET", "/lead/", {"params": {"_skip": 10**9}}, 400),
    ("GET", "/lead/", {"params": {"_limit": "many"}}, 400),
    ("GET", "/contact/", {"params": {"_limit": 101}}, 400),
    ("GET", "/lead/lead_doesnotexist/", {}, 404),
    ("PUT", "/lead/lead_doesnotexist/", {"json": {"name": "x"}}, 404),
    ("DELETE", "/task/task_doesnotexist/", {}, 404),
    ("GET", "/no/such/route/", {}, 404),
    ("DELETE", "/lead/", {}, 405),
    ("PATCH", "/lead/LEAD/", {"json": {}}, 405),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), BAD_REQUESTS)
async def test_bad_input_is_refused_cleanly(
    sim: Simulator, http: Any, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    lead_id = next(iter(sim.state["leads"]))
    path = path.replace("LEAD", lead_id)
    if "json" in kwargs:
        kwargs = {**kwargs, "json": _subst(kwargs["json"], lead_id)}
    before_hash, before_events = sim.state_hash(), len(sim.events)
    counter = sim.state.ids.counter
    r = await http.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body["error"], str) and isinstance(body["errors"], list)
    assert isinstance(body["field-errors"], dict)
    if status == 405:
        assert r.headers["allow"]
    assert sim.state_hash() == before_hash and len(sim.events) == before_events
    assert sim.state.ids.counter == counter


def _subst(value: Any, lead_id: str) -> Any:
    if isinstance(value, dict):
        return {k: _subst(v, lead_id) for k, v in value.items()}
    return lead_id if value == "LEAD" else value


async def test_field_errors_name_the_fields(http: Any) -> None:
    r = await http.post("/lead/", json={"name": "x", "bogus": 1, "status_id": 3})
    assert set(r.json()["field-errors"]) == {"bogus", "status_id"}
    r = await http.post("/contact/", json={})
    assert "lead_id" in r.json()["field-errors"]


async def test_webhook_dispatcher_is_wired_to_subscriptions(sim: Simulator, http: Any) -> None:
    received: list[dict[str, Any]] = []

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append({"headers": dict(scope["headers"]), "body": json.loads(body)})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sim.webhooks.mount("http://hooks.test", receiver)
    hook = (
        await http.post(
            "/webhook/",
            json={
                "url": "http://hooks.test/close",
                "events": [{"object_type": "lead", "action": "created"}],
            },
        )
    ).json()
    lead = await new_lead(http, contacts=[{"name": "not delivered"}])
    await sim.webhooks.drain()
    assert [r["body"]["event"]["object_id"] for r in received] == [lead["id"]]
    assert received[0]["body"]["subscription_id"] == hook["id"]
    assert b"close-sig-hash" in received[0]["headers"]


_WRITES = [ep for ep in ENDPOINTS if ep.method in ("POST", "PUT")]
_KEYS = sorted(
    {name for ep in _WRITES if ep.body_model for name in ep.body_model.model_fields}
    | {"custom.cf_x", "queries", "type", "bogus", "email", "emails", "_limit", "cursor"}
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ep_index=st.integers(0, len(_WRITES) - 1), body=_JSON, use_real_id=st.booleans())
def test_random_bodies_never_500_nor_half_apply(
    ep_index: int, body: Any, use_real_id: bool
) -> None:
    ep = _WRITES[ep_index]
    sim = _FUZZ_SIM
    obj_id = "nope"
    if use_real_id and "{id}" in ep.path:
        ids = [e["object_id"] for e in sim.events if e["object_type"].startswith(ep.resource)]
        ids += list(sim.state["leads"]) if ep.resource == "lead" else []
        obj_id = ids[-1] if ids else "nope"
    path = ep.path.replace("{id}", obj_id)

    async def send() -> httpx.Response:
        async with sim.http_client() as http:
            return await http.request(ep.method, path, json=body)

    before, events = sim.state_hash(), len(sim.events)
    response = asyncio.run(send())
    assert response.status_code < 500, response.text
    assert set(response.json()) >= (
        {"error", "errors", "field-errors"} if response.status_code >= 400 else set()
    )
    if response.status_code >= 400:
        assert sim.state_hash() == before and len(sim.events) == events


_FUZZ_SIM = Simulator(seed=99, leads=4, clock=FakeClock())
