"""Rate limits: 429s wait Close's precise reset; pacing waits before a group runs dry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from closeguard.tools._pacing import parse_rate_limit, retry_after_seconds
from closeguard.tools.client import RetrySettings
from closeguard.tools.errors import RateLimited


def within_jitter(waited: float, expected: float) -> bool:
    """The client adds at most 5% + 10 ms to a wait, never less than asked."""
    return expected <= waited <= expected * 1.05 + 0.01 + 1e-9


def burst(n: int, too_many: Callable[[], httpx.Response]) -> Callable[[httpx.Request], Any]:
    """``n`` 429s, then a lead."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= n:
            return too_many()
        return httpx.Response(200, json={"id": "lead_1", "name": "Acme"})

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


CASES: dict[str, tuple[Callable[[], httpx.Response], float]] = {
    "body rate_reset": (
        lambda: httpx.Response(
            429,
            json={"error": {"message": "slow down", "rate_reset": 1.25}},
            headers={"RateLimit": "limit=40, remaining=0, reset=2", "Retry-After": "2"},
        ),
        1.25,
    ),
    "top-level rate_reset": (
        lambda: httpx.Response(429, json={"error": "slow down", "rate_reset": 0.35}),
        0.35,
    ),
    "header reset": (
        lambda: httpx.Response(
            429, json={"error": "slow"}, headers={"RateLimit": "limit=40, remaining=0, reset=0.5"}
        ),
        0.5,
    ),
    "Retry-After only, fractional rounded up": (
        lambda: httpx.Response(429, json={"error": "slow"}, headers={"Retry-After": "1.2"}),
        2.0,
    ),
    "plain text from ingress": (
        lambda: httpx.Response(
            429, text="<html>Too Many Requests</html>", headers={"Retry-After": "3"}
        ),
        3.0,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_429_burst_waits_the_precise_reset_then_returns_the_result(
    make_client: Any, fake_time: Any, case: str
) -> None:
    too_many, expected = CASES[case]
    handler = burst(3, too_many)
    client = make_client(handler)
    lead = await client.leads.get("lead_1")
    assert lead.name == "Acme"
    assert len(handler.seen) == 4  # type: ignore[attr-defined]
    assert len(fake_time.sleeps) == 3
    assert all(within_jitter(w, expected) for w in fake_time.sleeps), fake_time.sleeps


async def test_429_without_any_hint_uses_default_backoff(make_client: Any, fake_time: Any) -> None:
    handler = burst(2, lambda: httpx.Response(429, text="busy"))
    client = make_client(handler, retry=RetrySettings(default_rate_limit_wait=0.25))
    assert (await client.leads.get("lead_1")).id == "lead_1"
    assert within_jitter(fake_time.sleeps[0], 0.25)
    assert within_jitter(fake_time.sleeps[1], 0.5)


async def test_429_with_a_zero_reset_still_waits_a_moment(make_client: Any, fake_time: Any) -> None:
    """A reset rounded to 0 at a window's edge must not become retries at the same instant.

    On a fake clock an immediate retry sees the very window that refused it, so every retry
    was spent at once (the simulator's rate-limited burst test failed about one run in six).
    """
    handler = burst(3, lambda: httpx.Response(429, json={"error": {"rate_reset": 0}}))
    client = make_client(handler, retry=RetrySettings(max_rate_limit_retries=3))
    assert (await client.leads.get("lead_1")).id == "lead_1"
    assert len(fake_time.sleeps) == 3
    assert all(within_jitter(w, 0.05) for w in fake_time.sleeps), fake_time.sleeps


async def test_429_on_a_write_is_retried_since_close_did_not_apply_it(
    make_client: Any, fake_time: Any
) -> None:
    handler = burst(1, lambda: httpx.Response(429, json={"error": {"rate_reset": 0.2}}))
    client = make_client(handler)
    lead = await client.leads.create({"name": "Acme"})
    assert lead.id == "lead_1"
    assert [r.method for r in handler.seen] == ["POST", "POST"]  # type: ignore[attr-defined]
    assert within_jitter(fake_time.sleeps[0], 0.2)


async def test_429_until_retries_run_out_raises_rate_limited(
    make_client: Any, fake_time: Any
) -> None:
    handler = burst(100, lambda: httpx.Response(429, json={"error": {"rate_reset": 0.1}}))
    client = make_client(handler, retry=RetrySettings(max_rate_limit_retries=3))
    with pytest.raises(RateLimited) as info:
        await client.leads.get("lead_1")
    assert info.value.retry_after == pytest.approx(0.1)
    assert info.value.status_code == 429
    assert "GET /lead/lead_1/" in str(info.value)
    assert len(handler.seen) == 4  # type: ignore[attr-defined]


async def test_429_asking_for_a_very_long_wait_raises_at_once(
    make_client: Any, fake_time: Any
) -> None:
    handler = burst(1, lambda: httpx.Response(429, json={"error": {"rate_reset": 3600}}))
    client = make_client(handler)
    with pytest.raises(RateLimited):
        await client.leads.get("lead_1")
    assert fake_time.sleeps == []


def paced_handler(log: list[tuple[str, float]], fake_time: Any) -> Callable[..., Any]:
    def handler(request: httpx.Request) -> httpx.Response:
        log.append((f"{request.method} {request.url.path}", fake_time.monotonic()))
        headers = {"RateLimit": "limit=100, remaining=0, reset=0.4"}
        if request.url.path.startswith("/api/v1/lead/"):
            return httpx.Response(200, json={"id": "lead_1"}, headers=headers)
        return httpx.Response(200, json={"id": "cont_1"})

    return handler


async def test_pacing_waits_for_reset_when_a_group_runs_dry_other_groups_do_not(
    make_client: Any, fake_time: Any
) -> None:
    log: list[tuple[str, float]] = []
    client = make_client(paced_handler(log, fake_time))
    start = fake_time.monotonic()
    await client.leads.get("lead_1")  # reports remaining=0, reset=0.4
    await client.contacts.get("cont_1")  # another group: no wait
    assert fake_time.sleeps == []
    await client.leads.get("lead_1")  # same group: waits the reset first
    assert len(fake_time.sleeps) == 1 and within_jitter(fake_time.sleeps[0], 0.4)
    assert log[2][1] - start >= 0.4
    # Writes to /lead/ are another group (lead:write) and do not wait for lead reads.
    fake_time.sleeps.clear()
    await client.leads.update("lead_1", {"name": "x"})
    assert fake_time.sleeps == []


async def test_pacing_counts_concurrent_requests_in_flight(
    make_client: Any, fake_time: Any
) -> None:
    """With 2 left in the window, 5 concurrent reads: 2 go at once, 3 wait for the reset."""
    first = True
    sent_at: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal first
        if first:
            first = False
            return httpx.Response(
                200, json={"id": "lead_0"}, headers={"RateLimit": "limit=10, remaining=2, reset=1"}
            )
        sent_at.append(fake_time.monotonic())
        await asyncio.sleep(0)
        return httpx.Response(200, json={"id": "lead_1"})

    client = make_client(handler)
    await client.leads.get("lead_0")
    start = fake_time.monotonic()
    await asyncio.gather(*(client.leads.get("lead_1") for _ in range(5)))
    assert sent_at[:2] == [start, start]
    assert all(t >= start + 1.0 for t in sent_at[2:])
    assert len(sent_at) == 5


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("limit=100, remaining=50, reset=5", (100.0, 50.0, 5.0)),
        ("limit=100,  remaining=50 ,reset=0.5", (100.0, 50.0, 0.5)),
        ("limit = 20, remaining = 0, reset = 1.25", (20.0, 0.0, 1.25)),
    ],
)
def test_parse_rate_limit_header_variants(header: str, expected: tuple[float, ...]) -> None:
    info = parse_rate_limit(httpx.Headers({"RateLimit": header}))
    assert info is not None
    assert (info.limit, info.remaining, info.reset) == expected


def test_parse_rate_limit_split_headers_and_garbage() -> None:
    split = httpx.Headers(
        {"RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "0.2"}
    )
    info = parse_rate_limit(split)
    assert info is not None and (info.remaining, info.reset) == (3.0, 0.2)
    assert parse_rate_limit(httpx.Headers({"RateLimit": "nonsense"})) is None
    assert parse_rate_limit(httpx.Headers({})) is None


def test_retry_after_values() -> None:
    assert retry_after_seconds("3", now_wall=0.0) == 3.0
    assert retry_after_seconds("0.2", now_wall=0.0) == 1.0
    assert retry_after_seconds("", now_wall=0.0) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:05 GMT", now_wall=1445412480.0) == 5.0
    assert retry_after_seconds("soon", now_wall=0.0) is None
