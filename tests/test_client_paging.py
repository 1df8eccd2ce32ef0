"""Paging: offset lists with caps and short pages, Event Log cursors, search cursors."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest

from closeguard.tools import catalog
from closeguard.tools.errors import InvalidArguments, PagingLimitExceeded


class OffsetServer:
    """Like Close: clamps ``_limit`` to its own cap, sometimes returns fewer than asked."""

    def __init__(self, total: int, *, server_cap: int, short_every: int = 0) -> None:
        self.items = [{"id": f"lead_{i:05d}", "name": f"Lead {i}"} for i in range(total)]
        self.server_cap = server_cap
        self.short_every = short_every
        self.asked: list[tuple[int, int]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        skip = int(request.url.params.get("_skip", "0"))
        limit = int(request.url.params.get("_limit", "100"))
        self.asked.append((skip, limit))
        served = min(limit, self.server_cap)
        if self.short_every and len(self.asked) % self.short_every == 0:
            served = max(served - 7, 1)
        data = self.items[skip : skip + served]
        has_more = skip + len(data) < len(self.items)
        return httpx.Response(200, json={"data": data, "has_more": has_more})


@pytest.mark.parametrize(("server_cap", "short_every"), [(200, 3), (75, 2), (1000, 0)])
async def test_offset_iter_sees_every_object_once_and_never_asks_past_the_cap(
    make_client: Any, server_cap: int, short_every: int
) -> None:
    server = OffsetServer(1234, server_cap=server_cap, short_every=short_every)
    client = make_client(server)
    seen = [lead.id async for lead in client.leads.iter()]

    counts = Counter(seen)
    assert len(seen) == 1234
    assert set(counts) == {item["id"] for item in server.items}
    assert max(counts.values()) == 1
    cap = catalog.BY_NAME["lead.list"].max_limit
    assert cap == 200
    assert all(limit <= cap for _, limit in server.asked)
    # _skip advances by what the page actually held, so pages tile without gaps.
    skips = [skip for skip, _ in server.asked]
    assert skips == sorted(set(skips))


async def test_page_size_above_cap_is_clamped_and_filters_are_sent(make_client: Any) -> None:
    server = OffsetServer(10, server_cap=500)
    client = make_client(server)
    page = await client.leads.list(limit=10_000, query="name:Acme")
    assert server.asked == [(0, 200)]
    assert len(page.data) == 10 and page.has_more is False


async def test_list_filter_typo_fails_before_sending(make_client: Any) -> None:
    server = OffsetServer(10, server_cap=500)
    client = make_client(server)
    with pytest.raises(InvalidArguments, match="qeury"):
        await client.leads.list(qeury="x")
    with pytest.raises(ValueError):
        [x async for x in client.contacts.iter(lead="lead_1")]
    assert server.asked == []


async def test_offset_iter_stops_with_clear_error_before_passing_max_skip(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = replace(catalog.BY_NAME["lead.list"], max_skip=400)
    monkeypatch.setitem(catalog.BY_NAME, "lead.list", small)
    server = OffsetServer(1000, server_cap=200)
    client = make_client(server)
    seen: list[str] = []
    with pytest.raises(PagingLimitExceeded, match=r"_skip=600.*maximum of 400") as info:
        async for lead in client.leads.iter():
            seen.append(lead.id)
    assert info.value.skip == 600 and info.value.max_skip == 400
    assert len(seen) == 600
    assert all(skip <= 400 for skip, _ in server.asked)


async def test_offset_iter_stops_when_server_says_more_but_sends_nothing(make_client: Any) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(200, json={"data": [], "has_more": True})

    client = make_client(handler)
    assert [t async for t in client.tasks.iter()] == []
    assert len(calls) == 1


def _event(i: int) -> dict[str, Any]:
    return {"id": f"ev_{i:04d}", "object_type": "lead", "action": "updated", "lead_id": "lead_1"}


async def test_event_log_follows_cursor_next_with_limit_at_most_50(make_client: Any) -> None:
    events = [_event(i) for i in range(137)]
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/event/"
        params = dict(request.url.params)
        asked.append(params)
        assert "_skip" not in params
        start = int(params.get("_cursor", "c0")[1:])
        limit = int(params["_limit"])
        data = events[start : start + limit]
        nxt = f"c{start + limit}" if start + limit < len(events) else None
        return httpx.Response(200, json={"data": data, "cursor_next": nxt, "cursor_previous": None})

    client = make_client(handler)
    seen = [e.id async for e in client.events.iter(object_type="lead", page_size=500)]
    assert seen == [e["id"] for e in events]
    assert all(int(p["_limit"]) <= 50 for p in asked)
    assert all(p["object_type"] == "lead" for p in asked)
    assert [p.get("_cursor") for p in asked] == [None, "c50", "c100"]

    page = await client.events.list(limit=10, cursor="c130")
    assert [e.id for e in page.data] == [e["id"] for e in events[130:137]]
    assert page.cursor is None and page.has_more is False


async def test_search_follows_body_cursor_until_null(make_client: Any) -> None:
    rows = [{"id": f"lead_{i}", "display_name": f"L{i}"} for i in range(450)]
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/v1/data/search/")
        body = json.loads(request.content)
        bodies.append(body)
        start = int(body.get("cursor") or 0)
        served = min(body["_limit"], 150)  # server clamps below our cap
        data = rows[start : start + served]
        nxt = str(start + served) if start + served < len(rows) else None
        return httpx.Response(200, json={"data": data, "cursor": nxt})

    client = make_client(handler)
    query = {"type": "object_type", "object_type": "lead"}
    seen = [row["id"] async for row in client.search.iter(query, fields={"lead": ["id"]})]
    assert seen == [r["id"] for r in rows]
    assert all(b["_limit"] <= 200 for b in bodies)
    assert all(b["query"] == query and b["_fields"] == {"lead": ["id"]} for b in bodies)
    assert [b.get("cursor") for b in bodies] == [None, "150", "300"]

    page = await client.search.page(query, limit=5, cursor="445")
    assert [r["id"] for r in page.data] == [r["id"] for r in rows[445:]]
    assert page.cursor is None
