"""Every catalog endpoint becomes a valid LangChain tool that names its access level."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx
import jsonschema
import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

from closeguard.tools._accessors import Leads
from closeguard.tools.calls import walk
from closeguard.tools.catalog import BY_NAME, ENDPOINTS, Endpoint
from closeguard.tools.errors import NotFound, PolicyViolation
from closeguard.tools.langchain import compact, make_tools, tool_name


class RecordingClient:
    """Stands in for CloseClient: records endpoint calls and answers from a script."""

    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any, Any, Any]] = []
        self.answer = answer if answer is not None else {"ok": True}
        self.error = error

    async def call(
        self,
        endpoint: Endpoint | str,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        name = endpoint.name if isinstance(endpoint, Endpoint) else endpoint
        self.calls.append((name, dict(path_params or {}), params, json))
        if self.error is not None:
            raise self.error
        return self.answer


def test_one_tool_per_endpoint_with_valid_schema_and_access_in_description() -> None:
    tools = make_tools(RecordingClient())
    assert len(tools) == len(ENDPOINTS)
    for tool, ep in zip(tools, ENDPOINTS, strict=True):
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", tool.name)
        assert tool.name == tool_name(ep)
        assert f"[{ep.access}]" in tool.description
        assert ep.access.upper() in tool.description
        schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
        jsonschema.Draft202012Validator.check_schema(schema)
        for param in ep.path_params:
            assert param in schema["required"]
        openai = convert_to_openai_tool(tool)
        assert openai["function"]["name"] == tool.name
        assert tool.metadata == {"endpoint": ep.name, "access": ep.access, "resource": ep.resource}


def test_email_tool_warns_that_outbox_sends() -> None:
    tool = next(t for t in make_tools(RecordingClient()) if t.name == "activity_email_create")
    assert "SENT for real" in tool.description


async def test_tool_routes_path_query_and_body() -> None:
    client = RecordingClient({"id": "lead_1"})
    tools = {t.name: t for t in make_tools(client)}
    out = await tools["lead_update"].ainvoke(
        {"id": "lead_1", "name": "Acme", "custom": {"cf_tier": "gold"}}
    )
    assert out == '{"id":"lead_1"}'
    await tools["activity_list"].ainvoke({"lead_id": "lead_1", "limit": 5, "type_": "Note"})
    await tools["task_bulk_update"].ainvoke(
        {"filter": {"lead_id": "lead_1"}, "changes": {"is_complete": True}}
    )
    assert client.calls == [
        ("lead.update", {"id": "lead_1"}, None, {"name": "Acme", "custom.cf_tier": "gold"}),
        ("activity.list", {}, {"lead_id": "lead_1", "_limit": 5, "_type": "Note"}, None),
        ("task.bulk_update", {}, {"lead_id": "lead_1"}, {"is_complete": True}),
    ]


async def test_tool_rejects_unknown_arguments_before_calling() -> None:
    client = RecordingClient()
    tool = next(t for t in make_tools(client) if t.name == "lead_create")
    with pytest.raises(Exception, match="stauts"):
        await tool.ainvoke({"name": "A", "stauts_id": "x"})
    assert client.calls == []


async def test_close_errors_become_tool_messages_but_policy_errors_propagate() -> None:
    response = httpx.Response(404, request=httpx.Request("GET", "https://x/api/v1/lead/l/"))
    client = RecordingClient(error=NotFound("GET /lead/l/: not found", response=response))
    tool = next(t for t in make_tools(client) if t.name == "lead_get")
    assert "not found" in await tool.ainvoke({"id": "l"})
    client.error = PolicyViolation("denied", rule="grants.lead")
    with pytest.raises(PolicyViolation):
        await tool.ainvoke({"id": "l"})


def test_compact_trims_long_lists_with_a_note() -> None:
    page = {"data": [{"id": i} for i in range(50)], "has_more": True}
    text = compact(page, max_items=3)
    assert '"data":[{"id":0},{"id":1},{"id":2}]' in text
    assert "showing 3 of 50" in text and '"has_more":true' in text
    assert compact({"x": "y" * 100}, max_chars=20).endswith("characters]")
    assert compact({"data": [1, 2]}, max_items=3) == '{"data":[1,2]}'


def test_nested_models_keep_their_constraints() -> None:
    tool = next(t for t in make_tools(RecordingClient()) if t.name == "opportunity_update")
    schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    confidence = schema["properties"]["confidence"]["anyOf"][0]
    assert confidence["maximum"] == 100
    assert BY_NAME["opportunity.update"].access in tool.description


async def test_path_like_id_is_refused_before_sending() -> None:
    from closeguard.tools.client import CloseClient

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    async with CloseClient("k", transport=httpx.MockTransport(handler)) as client:
        tool = next(t for t in make_tools(client) if t.name == "lead_delete")
        answer = await tool.ainvoke({"id": "lead_1/../../organization/orga_1"})
    assert "must be a Close id" in answer
    assert sent == []


async def test_accessors_and_tools_make_the_same_call_through_one_protocol() -> None:
    """The typed accessors are thin calls onto the same ``call`` the tools use."""
    from_tool, from_accessor = RecordingClient({"id": "lead_1"}), RecordingClient({"id": "lead_1"})
    tools = {t.name: t for t in make_tools(from_tool)}
    await tools["lead_update"].ainvoke({"id": "lead_1", "name": "Acme"})
    await tools["lead_get"].ainvoke({"id": "lead_1", "fields": "id,name"})
    await Leads(from_accessor).update("lead_1", {"name": "Acme"})
    await Leads(from_accessor).get("lead_1", fields="id,name")
    assert from_tool.calls == from_accessor.calls


class PagedClient(RecordingClient):
    """Answers each paging style with two pages, then a repeat of the first cursor."""

    async def call(self, endpoint: Endpoint | str, **kwargs: Any) -> Any:
        await super().call(endpoint, **kwargs)
        sent = kwargs.get("json") or kwargs.get("params") or {}
        n = len(self.calls)
        if isinstance(endpoint, Endpoint) and endpoint.paging == "offset":
            return {"data": [{"id": f"x{sent['_skip']}"}], "has_more": n < 2}
        key = "cursor_next" if kwargs.get("params") is not None else "cursor"
        return {"data": [{"id": f"x{n}"}], key: "c1"}


@pytest.mark.parametrize("name", ["lead.list", "event.list", "data.search"])
async def test_one_walker_follows_every_paging_style_and_stops_on_a_repeated_cursor(
    name: str,
) -> None:
    client = PagedClient()
    ep = BY_NAME[name]
    items = [item async for item in walk(client, ep, {}, page_size=1)]
    assert [i["id"] for i in items] == (["x0", "x1"] if ep.paging == "offset" else ["x1", "x2"])
    positions = [(c[2] or c[3] or {}) for c in client.calls]
    key = {"offset": "_skip", "cursor": "_cursor", "search": "cursor"}[ep.paging or ""]
    assert [p.get(key) for p in positions] == ([0, 1] if ep.paging == "offset" else [None, "c1"])
    assert all(p["_limit"] == 1 for p in positions)
