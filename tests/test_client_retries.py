"""Retries: reads retry transient failures; writes are resent only if Close never saw them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from closeguard.tools.client import RetrySettings
from closeguard.tools.errors import CloseConnectionError, ServerError

LEAD = {"id": "lead_1", "name": "Acme"}


def failing(n: int, fail: Callable[[httpx.Request], httpx.Response]) -> Any:
    """Fail the first ``n`` requests with ``fail`` (a response or a raise), then succeed."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= n:
            return fail(request)
        return httpx.Response(200, json=LEAD)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def raise_(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return fail


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_reads_retry_5xx_with_backoff_then_succeed(
    make_client: Any, fake_time: Any, status: int
) -> None:
    handler = failing(2, lambda r: httpx.Response(status, text="unavailable"))
    client = make_client(handler, retry=RetrySettings(backoff_base=0.5, backoff_max=10))
    lead = await client.leads.get("lead_1")
    assert lead.name == "Acme"
    assert len(handler.seen) == 3
    first, second = fake_time.sleeps
    assert 0.5 <= first <= 0.5 * 1.05 + 0.01
    assert 1.0 <= second <= 1.0 * 1.05 + 0.01


async def test_search_post_is_a_read_and_is_retried(make_client: Any) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="unavailable")

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if len(seen) == 1:
            return fail(request)
        return httpx.Response(200, json={"data": [{"id": "lead_1"}], "cursor": None})

    client = make_client(handler)
    page = await client.search.page({"type": "match_all"})
    assert page.data == [{"id": "lead_1"}]
    assert seen == ["POST", "POST"]


async def test_reads_give_up_after_max_attempts_with_server_error(make_client: Any) -> None:
    handler = failing(100, lambda r: httpx.Response(503, json={"error": "down"}))
    client = make_client(handler, retry=RetrySettings(max_attempts=3))
    with pytest.raises(ServerError, match=r"GET /lead/lead_1/ failed: 503"):
        await client.leads.get("lead_1")
    assert len(handler.seen) == 3


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/lead/", {}),
        ("DELETE", "/lead/lead_1/", None),
        ("PUT", "/activity/email/acti_1/", {"status": "outbox"}),
        ("PUT", "/task/", {"is_complete": True}),
        ("PUT", "/organization/orga_1/", {"name": "x"}),
    ],
)
async def test_503_on_a_write_that_is_not_idempotent_is_not_retried(
    make_client: Any, method: str, path: str, body: Any
) -> None:
    handler = failing(1, lambda r: httpx.Response(503, text="unavailable"))
    client = make_client(handler)
    with pytest.raises(ServerError) as info:
        await client.request(method, path, json=body)
    assert info.value.status_code == 503
    assert len(handler.seen) == 1


@pytest.mark.parametrize(
    ("fault", "path", "body"),
    [
        (lambda r: httpx.Response(502, text="bad gateway"), "/lead/lead_1/", {"name": "n"}),
        (raise_(httpx.ReadTimeout), "/opportunity/oppo_1/", {"confidence": 50}),
        (lambda r: httpx.Response(500, text="oops"), "/activity/email/acti_1/", {"subject": "s"}),
    ],
)
async def test_a_put_that_only_sets_fields_is_retried_like_a_read(
    make_client: Any, fault: Any, path: str, body: Any
) -> None:
    handler = failing(2, fault)
    client = make_client(handler)
    await client.request("PUT", path, json=body)
    assert len(handler.seen) == 3


async def test_read_timeout_on_a_write_raises_and_is_never_resent(
    make_client: Any, fake_time: Any
) -> None:
    handler = failing(1, raise_(httpx.ReadTimeout))
    client = make_client(handler)
    with pytest.raises(CloseConnectionError) as info:
        await client.leads.create({"name": "Acme"})
    assert info.value.request_sent is True
    assert info.value.method == "POST" and info.value.path == "/lead/"
    assert "not resent" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(handler.seen) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_connection_failures_before_sending_a_write_are_retried(
    make_client: Any, exc_type: type[httpx.TransportError]
) -> None:
    handler = failing(2, raise_(exc_type))
    client = make_client(handler)
    lead = await client.leads.create({"name": "Acme"})
    assert lead.id == "lead_1"
    assert [r.method for r in handler.seen] == ["POST"] * 3


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ReadError, httpx.ConnectError])
async def test_reads_retry_transport_failures(
    make_client: Any, exc_type: type[httpx.TransportError]
) -> None:
    handler = failing(2, raise_(exc_type))
    client = make_client(handler)
    assert (await client.get("/lead/lead_1")) == LEAD
    assert len(handler.seen) == 3


async def test_connect_errors_that_never_stop_raise_transport_error_not_sent(
    make_client: Any,
) -> None:
    handler = failing(100, raise_(httpx.ConnectError))
    client = make_client(handler, retry=RetrySettings(max_attempts=2))
    with pytest.raises(CloseConnectionError) as info:
        await client.leads.delete("lead_1")
    assert info.value.request_sent is False
    assert len(handler.seen) == 2


async def test_retries_of_one_call_share_a_call_id_and_count_attempts(make_client: Any) -> None:
    handler = failing(2, lambda r: httpx.Response(502, text="bad gateway"))
    client = make_client(handler)
    await client.leads.get("lead_1")
    await client.leads.get("lead_1")
    meta = [r.extensions["closeguard"] for r in handler.seen]
    assert [m["attempt"] for m in meta] == [1, 2, 3, 1]
    assert len({m["call_id"] for m in meta[:3]}) == 1
    assert meta[3]["call_id"] != meta[0]["call_id"]
    assert all(len(m["call_id"]) == 32 for m in meta)
