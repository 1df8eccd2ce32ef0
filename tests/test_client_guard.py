"""The guard hook: every request passes the wrapped transport; its errors pass through."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from closeguard.tools.client import TransportGuard
from closeguard.tools.errors import ApprovalRequired, PolicyViolation


class RecordingGuard:
    """A tiny guard: records every request, denies deletes, wants approval for merges."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.wrapped_with: dict[str, Any] = {}

    def wrap(
        self, transport: httpx.AsyncBaseTransport, *, actor: str | None, run_id: str | None
    ) -> httpx.AsyncBaseTransport:
        self.wrapped_with = {"actor": actor, "run_id": run_id}
        guard = self

        class Guarded(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                meta = dict(request.extensions.get("closeguard", {}))
                guard.seen.append((request.method, request.url.path, meta))
                if request.method == "DELETE":
                    raise PolicyViolation("deletes are not allowed", rule="no-deletes")
                if request.url.path.endswith("/lead/merge/"):
                    raise ApprovalRequired("merge needs a human", approval_id="appr_1")
                return await transport.handle_async_request(request)

            async def aclose(self) -> None:
                await transport.aclose()

        return Guarded()


def close_like(request: httpx.Request) -> httpx.Response:
    if request.method == "GET" and request.url.path == "/api/v1/lead/":
        return httpx.Response(200, json={"data": [{"id": "lead_1"}], "has_more": False})
    body = json.loads(request.content) if request.content else {}
    return httpx.Response(200, json={"id": "lead_1", **body})


def test_fake_guard_satisfies_the_protocol() -> None:
    assert isinstance(RecordingGuard(), TransportGuard)


async def test_guard_sees_typed_and_raw_requests_with_call_metadata(make_client: Any) -> None:
    guard = RecordingGuard()
    client = make_client(close_like, policy=guard, actor="agent:triage", run_id="run_7")
    assert guard.wrapped_with == {"actor": "agent:triage", "run_id": "run_7"}
    await client.leads.create({"name": "Acme"})
    [lead async for lead in client.leads.iter()]
    await client.get("lead/lead_1")
    await client.request("PUT", "/lead/lead_1/", json={"name": "B"})
    await client.post("/some/unknown/path", json={})
    paths = [(method, path) for method, path, _ in guard.seen]
    assert paths == [
        ("POST", "/api/v1/lead/"),
        ("GET", "/api/v1/lead/"),
        ("GET", "/api/v1/lead/lead_1/"),
        ("PUT", "/api/v1/lead/lead_1/"),
        ("POST", "/api/v1/some/unknown/path/"),
    ]
    assert all(meta["attempt"] == 1 and len(meta["call_id"]) == 32 for *_, meta in guard.seen)


async def test_guard_errors_propagate_unchanged_and_are_not_retried(make_client: Any) -> None:
    guard = RecordingGuard()
    hits: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(request)
        return close_like(request)

    client = make_client(handler, policy=guard)
    with pytest.raises(PolicyViolation) as denied:
        await client.leads.delete("lead_1")
    assert denied.value.rule == "no-deletes"
    assert str(denied.value) == "deletes are not allowed"
    with pytest.raises(ApprovalRequired) as pending:
        await client.leads.merge("lead_1", "lead_2")
    assert pending.value.approval_id == "appr_1"
    with pytest.raises(PolicyViolation):
        await client.delete("/task/task_1/")
    assert [m for m, _, _ in guard.seen] == ["DELETE", "POST", "DELETE"]
    assert hits == []


async def test_extensions_never_reach_the_wire(make_client: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "user_1"})

    client = make_client(handler)
    await client.users.me()
    wire = " ".join(f"{k}: {v}" for k, v in seen[0].headers.items()) + str(seen[0].url)
    assert seen[0].extensions["closeguard"]["call_id"] not in wire
