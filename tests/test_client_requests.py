"""The requests ``CloseClient`` builds from parts it parsed once are the ones httpx builds
from scratch: same URL (canonical or not), same headers, same body bytes; answers decode
exactly; accessors are made once, on first use; closing closes the transport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from closeguard.tools.client import CloseClient, _Prefix

BASES = [
    "http://simulator.local/api/v1",
    "https://api.close.com/api/v1/",
    "http://127.0.0.1:8123/api/v1",
    "https://close.example:8443/prefix/api/v1",
]
PATHS = [
    "/lead/",
    "/lead/lead_AbC123xyz/",
    "/activity/note/acti_1/",
    "/lead/lead%2Fslash/",
    "/lead/a b/",
    "/lead/caf\u00e9/",
    "/lead/100%/",
    "/lead/./x/",
    "/lead/../x/",
    "/lead/x/..",
    "/data/search/",
]
QUERIES: list[dict[str, Any] | None] = [
    None,
    {"lead_id": "lead_1", "_limit": 100},
    {"query": 'name:"Acme & Co" status=won', "_fields": "id,name"},
    {"flag": True, "other": False, "empty": ""},
    {"text": "caf\u00e9 ?#&="},
]


@pytest.mark.parametrize("base", BASES)
def test_a_url_from_the_parsed_base_is_httpx_own(base: str) -> None:
    prefix = _Prefix(base)
    for path in PATHS:
        for params in QUERIES:
            query = str(httpx.QueryParams(params)) if params else None
            expected = httpx.URL(base.rstrip("/") + path + ("" if query is None else f"?{query}"))
            made = prefix.url(path, query)
            assert made == expected, (path, params)
            assert str(made) == str(expected)
            assert made.raw_path == expected.raw_path
            assert (made.scheme, made.host, made.port) == (
                expected.scheme,
                expected.host,
                expected.port,
            )
            assert (made.path, made.query) == (expected.path, expected.query)
            assert made.params == expected.params


def answering(seen: list[httpx.Request], body: bytes = b"{}") -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", "/lead/", {"query": "Acme & Co", "_limit": 5}, None),
        ("POST", "/task/", None, {"lead_id": "lead_1", "text": "Caf\u00e9 \u2615", "n": 2**70}),
        ("PUT", "/lead/lead_1/", None, {"custom.cf_x": [1, 2.5, None, True]}),
        ("POST", "/lead/lead_1/merge/", None, None),
        ("DELETE", "/task/task_1/", None, None),
    ],
)
async def test_a_request_has_the_headers_and_body_httpx_would_send(
    method: str, path: str, params: dict[str, Any] | None, body: Any
) -> None:
    seen: list[httpx.Request] = []
    async with CloseClient("k3y", base_url=BASES[0], transport=answering(seen)) as client:
        await client.request(method, path, params=params, json=body)
    [sent] = seen
    reference = httpx.AsyncClient(
        transport=answering([]),
        timeout=30.0,
        headers={"User-Agent": "closeguard/0.1", "Accept": "application/json"},
    ).build_request(
        method,
        BASES[0] + path,
        params=params,
        json=body,
        headers={"Authorization": "Basic " + "azN5Og=="},
    )
    assert sent.url == reference.url
    assert sent.content == reference.content
    assert sorted(sent.headers.items()) == sorted(
        (k, v) for k, v in reference.headers.items() if k != "authorization"
    ), "the credential is removed from the request once it is sent"
    assert sent.extensions["timeout"] == reference.extensions["timeout"]
    call = sent.extensions["closeguard"]
    assert call["attempt"] == 1 and len(call["call_id"]) == 32


async def test_answers_decode_exactly() -> None:
    body = {"id": "lead_1", "big": 2**70, "neg": -(2**64), "f": 0.1, "t": "caf\u00e9"}
    raw = json.dumps(body).encode()
    async with CloseClient("k", base_url=BASES[0], transport=answering([], raw)) as client:
        got = await client.get("/lead/lead_1/")
    assert got == body and type(got["big"]) is int and type(got["neg"]) is int
    async with CloseClient("k", base_url=BASES[0], transport=answering([], b"NaN")) as client:
        assert await client.get("/x/") != await client.get("/x/"), "NaN, as json.loads reads it"


async def test_accessors_are_made_once_on_first_use() -> None:
    client = CloseClient("k", base_url=BASES[0], transport=answering([]))
    assert "leads" not in vars(client)
    assert client.leads is client.leads and "leads" in vars(client)
    assert client.tasks._caller is client
    await client.aclose()


class Closing(httpx.AsyncBaseTransport):
    closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("raw_used", [False, True])
async def test_closing_the_client_closes_its_transport_once(raw_used: bool) -> None:
    transport = Closing()
    async with CloseClient("k", base_url=BASES[0], transport=transport) as client:
        await client.get("/lead/")
        if raw_used:
            await client._http.get(BASES[0] + "/lead/")
    assert transport.closed == 1
