"""Typed accessors: the catalog's method and path, validated arguments, parsed results."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from closeguard.tools import models as m
from closeguard.tools.catalog import BY_NAME
from closeguard.tools.client import CloseClient, normalize_path
from closeguard.tools.errors import InvalidArguments


class Recorder:
    """Answers every request with a plausible object or page; records what was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, dict(request.url.params), body))
        path = request.url.path
        if request.method == "DELETE":
            return httpx.Response(200, json={})
        if path.endswith(("/status/lead/", "/status/opportunity/")):
            return httpx.Response(200, json={"data": [{"id": "stat_1", "label": "Won"}]})
        if path.endswith("/pipeline/"):
            return httpx.Response(200, json={"data": [{"id": "pipe_1", "name": "Sales"}]})
        if path.endswith("/task/") and request.method == "PUT":
            return httpx.Response(200, json={"data": [], "has_more": False})
        if request.method == "GET" and path.count("/") == 4 and path != "/api/v1/me/":
            return httpx.Response(200, json={"data": [{"id": "x_1"}], "has_more": False})
        item = {"id": "x_1", "url": "https://example.com/hook", "events": []}
        if path.endswith("/event/ev_1/"):
            item = {"id": "ev_1", "object_type": "lead", "action": "created"}
        return httpx.Response(200, json={**item, **(body or {})})


Call = Callable[[CloseClient], Awaitable[Any]]

CASES: list[tuple[str, Call, str, str, Any, type[Any]]] = [
    ("lead.get", lambda c: c.leads.get("lead_1"), "GET", "/lead/lead_1/", None, m.Lead),
    (
        "lead.create",
        lambda c: c.leads.create(m.LeadCreate(name="Acme", **{"custom.cf_abc": "x"})),
        "POST",
        "/lead/",
        {"name": "Acme", "custom.cf_abc": "x"},
        m.Lead,
    ),
    (
        "lead.merge",
        lambda c: c.leads.merge("lead_1", "lead_2"),
        "POST",
        "/lead/merge/",
        {"source": "lead_1", "destination": "lead_2"},
        m.Lead,
    ),
    (
        "contact.create",
        lambda c: c.contacts.create({"lead_id": "lead_1", "name": "Ann"}),
        "POST",
        "/contact/",
        {"lead_id": "lead_1", "name": "Ann"},
        m.Contact,
    ),
    (
        "opportunity.update",
        lambda c: c.opportunities.update("oppo_1", {"status_id": "stat_2"}),
        "PUT",
        "/opportunity/oppo_1/",
        {"status_id": "stat_2"},
        m.Opportunity,
    ),
    (
        "activity.list",
        lambda c: c.activities.list(lead_id="lead_1"),
        "GET",
        "/activity/",
        None,
        m.Activity,
    ),
    (
        "activity.note.create",
        lambda c: c.notes.create({"lead_id": "lead_1", "note": "hi"}),
        "POST",
        "/activity/note/",
        {"lead_id": "lead_1", "note": "hi"},
        m.NoteActivity,
    ),
    (
        "activity.call.get",
        lambda c: c.calls.get("acti_1"),
        "GET",
        "/activity/call/acti_1/",
        None,
        m.CallActivity,
    ),
    (
        "activity.email.create",
        lambda c: c.emails.create({"lead_id": "lead_1", "status": "draft", "to": ["a@b.c"]}),
        "POST",
        "/activity/email/",
        {"lead_id": "lead_1", "status": "draft", "to": ["a@b.c"]},
        m.EmailActivity,
    ),
    (
        "task.delete",
        lambda c: c.tasks.delete("task_1"),
        "DELETE",
        "/task/task_1/",
        None,
        type(None),
    ),
    (
        "custom_field.opportunity.create",
        lambda c: c.custom_fields.opportunity.create({"name": "Size", "type": "number"}),
        "POST",
        "/custom_field/opportunity/",
        {"name": "Size", "type": "number"},
        m.CustomField,
    ),
    ("user.me", lambda c: c.users.me(), "GET", "/me/", None, m.User),
    ("user.get", lambda c: c.users.get("user_1"), "GET", "/user/user_1/", None, m.User),
    (
        "organization.update",
        lambda c: c.organization.update("orga_1", {"name": "New"}),
        "PUT",
        "/organization/orga_1/",
        {"name": "New"},
        m.Organization,
    ),
    ("status.lead.list", lambda c: c.statuses.lead(), "GET", "/status/lead/", None, list),
    (
        "status.opportunity.list",
        lambda c: c.statuses.opportunity(),
        "GET",
        "/status/opportunity/",
        None,
        list,
    ),
    ("pipeline.list", lambda c: c.pipelines.list(), "GET", "/pipeline/", None, list),
    (
        "webhook.create",
        lambda c: c.webhooks.create(
            {
                "url": "https://example.com/hook",
                "events": [{"object_type": "lead", "action": "created"}],
            }
        ),
        "POST",
        "/webhook/",
        {
            "url": "https://example.com/hook",
            "events": [{"object_type": "lead", "action": "created"}],
        },
        m.WebhookSubscription,
    ),
    ("event.get", lambda c: c.events.get("ev_1"), "GET", "/event/ev_1/", None, m.Event),
]


@pytest.mark.parametrize(
    ("name", "call", "method", "path", "body", "result"), CASES, ids=[c[0] for c in CASES]
)
async def test_accessor_sends_the_catalog_request_and_parses_the_result(
    make_client: Any, name: str, call: Call, method: str, path: str, body: Any, result: type
) -> None:
    ep = BY_NAME[name]
    assert (ep.method, ep.match(path) is not None) == (method, True)
    recorder = Recorder()
    out = await call(make_client(recorder))
    sent_method, sent_path, _, sent_body = recorder.requests[0]
    assert (sent_method, sent_path) == (method, "/api/v1" + path)
    assert sent_body == body
    if result is m.Activity:
        assert isinstance(out.data[0], m.Activity)
    else:
        assert isinstance(out, result)
    if result is list:
        assert all(isinstance(x, ep.item_model) for x in out)  # type: ignore[arg-type]


async def test_typo_in_a_dict_body_fails_before_sending(make_client: Any) -> None:
    recorder = Recorder()
    client = make_client(recorder)
    with pytest.raises(InvalidArguments, match="nmae") as info:
        await client.leads.create({"nmae": "Acme"})
    assert isinstance(info.value, ValueError)
    assert info.value.operation == "lead.create"
    with pytest.raises(InvalidArguments, match="confidence"):
        await client.opportunities.update("oppo_1", {"confidence": 150})
    with pytest.raises(InvalidArguments, match="status"):
        await client.emails.create({"lead_id": "lead_1", "status": "sending"})
    assert recorder.requests == []


async def test_bulk_update_sends_filter_as_query_and_refuses_an_empty_filter(
    make_client: Any,
) -> None:
    recorder = Recorder()
    client = make_client(recorder)
    await client.tasks.bulk_update(
        {"lead_id": "lead_1", "is_complete": False}, {"is_complete": True}
    )
    assert recorder.requests == [
        (
            "PUT",
            "/api/v1/task/",
            {"lead_id": "lead_1", "is_complete": "false"},
            {"is_complete": True},
        )
    ]
    with pytest.raises(InvalidArguments, match="empty filter"):
        await client.tasks.bulk_update({}, {"is_complete": True})
    assert len(recorder.requests) == 1


async def test_path_parameters_are_quoted_and_required(make_client: Any) -> None:
    recorder = Recorder()
    client = make_client(recorder)
    await client.leads.get("lead 1?x")
    assert recorder.requests[0][1] == "/api/v1/lead/lead 1?x/"
    for bad in ("lead_1/../../organization", "..", "."):
        with pytest.raises(InvalidArguments, match="must be a Close id"):
            await client.leads.get(bad)
    with pytest.raises(InvalidArguments, match="missing path parameter"):
        await client.leads.get("")


def test_normalize_path() -> None:
    assert normalize_path("lead/lead_x") == ("/lead/lead_x/", {})
    assert normalize_path("/lead/") == ("/lead/", {})
    assert normalize_path("/api/v1/lead/?_limit=5") == ("/lead/", {"_limit": "5"})
    with pytest.raises(ValueError):
        normalize_path("https://evil.example/lead/")
    with pytest.raises(ValueError):
        normalize_path("/lead/../organization/")


async def test_raw_request_merges_query_string_and_params(make_client: Any) -> None:
    recorder = Recorder()
    client = make_client(recorder)
    await client.get("lead?query=name:Acme", params={"_limit": 3, "skip_none": None})
    assert recorder.requests[0][1:3] == ("/api/v1/lead/", {"query": "name:Acme", "_limit": "3"})


def test_every_accessor_endpoint_exists_in_the_catalog() -> None:
    used = {name for name, *_ in CASES} | {
        "lead.list",
        "lead.update",
        "lead.delete",
        "contact.get",
        "contact.list",
        "opportunity.create",
        "opportunity.delete",
        "task.create",
        "task.update",
        "task.bulk_update",
        "task.list",
        "user.list",
        "organization.get",
        "webhook.list",
        "webhook.update",
        "webhook.delete",
        "event.list",
        "data.search",
    }
    assert used <= set(BY_NAME)
