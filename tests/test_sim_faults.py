"""Fault injection: seeded and reproducible, probabilities honoured, switchable, real drops."""

from __future__ import annotations

import importlib
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from closeguard.simulator.clock import FakeClock
from closeguard.simulator.faults import (
    DroppedConnection,
    FaultConfig,
    FaultInjector,
    FaultMiddleware,
    HTTPFaults,
)
from closeguard.simulator.ratelimit import RateLimiter, RateLimitMiddleware, RateLimits
from tests._secrets import api_key
from tests._serve import served


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sim/api/v1",
        auth=httpx.BasicAuth(api_key(), ""),
    )


async def outcomes(app: Any, n: int, path: str = "/lead/") -> list[str]:
    seen: list[str] = []
    async with client_for(app) as client:
        for _ in range(n):
            try:
                seen.append(str((await client.get(path)).status_code))
            except httpx.TransportError:
                seen.append("drop")
    return seen


MIXED = FaultConfig.everywhere(
    error_500=0.1, error_502=0.05, error_503=0.05, error_429=0.1, drop=0.05
)


async def test_same_seed_same_fault_sequence() -> None:
    clock = FakeClock()
    runs = [
        await outcomes(FaultMiddleware(ok_app, FaultInjector(MIXED, seed=seed), clock), 60)
        for seed in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert {"200", "500", "429"} <= set(runs[0])


async def test_probabilities_roughly_honoured() -> None:
    injector = FaultInjector(MIXED, seed=1)
    kinds = Counter(injector.decide("lead:read").fault for _ in range(20_000))
    expected = {None: 0.65, "500": 0.1, "502": 0.05, "503": 0.05, "429": 0.1, "drop": 0.05}
    for kind, p in expected.items():
        assert kinds[kind] / 20_000 == pytest.approx(p, abs=0.015), kind
    assert injector.counts["500"] == kinds["500"]


def test_group_resolution_exact_then_root_then_star() -> None:
    config = FaultConfig(
        groups={
            "lead:write": HTTPFaults(error_500=1.0),
            "lead": HTTPFaults(error_503=1.0),
            "*": HTTPFaults(error_429=1.0),
        }
    )
    injector = FaultInjector(config)
    assert injector.decide("lead:write").fault == "500"
    assert injector.decide("lead:read").fault == "503"
    assert injector.decide("task:read").fault == "429"
    assert (
        FaultInjector(FaultConfig(groups={"lead": HTTPFaults(error_500=1)}))
        .decide("task:read")
        .fault
        is None
    )


def test_probabilities_must_sum_to_at_most_one() -> None:
    with pytest.raises(ValueError):
        HTTPFaults(error_500=0.6, error_503=0.6)


async def test_run_time_switch() -> None:
    injector = FaultInjector(FaultConfig.everywhere(error_503=1.0), seed=3)
    app = FaultMiddleware(ok_app, injector, FakeClock())
    assert await outcomes(app, 3) == ["503"] * 3
    injector.disable()
    assert await outcomes(app, 3) == ["200"] * 3
    injector.enable()
    assert await outcomes(app, 1) == ["503"]
    injector.configure(FaultConfig(groups={"contact": HTTPFaults(error_500=1.0)}))
    assert await outcomes(app, 2) == ["200", "200"]
    assert await outcomes(app, 1, "/contact/") == ["500"]


async def test_faulted_429_has_close_shape() -> None:
    clock = FakeClock(start=1_700_000_000.75)
    limiter = RateLimiter(RateLimits(groups={"lead:read": 9}), clock)
    inner = RateLimitMiddleware(ok_app, limiter)
    app = FaultMiddleware(
        inner, FaultInjector(FaultConfig.everywhere(error_429=1.0)), clock, limiter=limiter
    )
    async with client_for(app) as client:
        response = await client.get("/lead/")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.headers["RateLimit"] == "limit=9, remaining=0, reset=0.25"
    assert response.json()["error"]["rate_reset"] == 0.25
    assert sum(limiter.allowed.values()) == 0


async def test_gateway_errors_are_not_json() -> None:
    app = FaultMiddleware(ok_app, FaultInjector(FaultConfig.everywhere(error_502=1.0)))
    async with client_for(app) as client:
        response = await client.get("/lead/")
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_latency_uses_the_clock() -> None:
    clock = FakeClock()
    app = FaultMiddleware(
        ok_app, FaultInjector(FaultConfig.everywhere(latency_ms=250, jitter_ms=100)), clock
    )
    before = clock.monotonic()
    assert await outcomes(app, 4) == ["200"] * 4
    spent = clock.monotonic() - before
    assert 4 * 0.25 <= spent <= 4 * 0.35


async def test_paths_outside_the_api_are_never_faulted() -> None:
    app = FaultMiddleware(ok_app, FaultInjector(FaultConfig.everywhere(error_500=1.0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        assert (await client.get("http://sim/healthz")).status_code == 200


async def test_drop_in_process_is_a_connection_error() -> None:
    app = FaultMiddleware(ok_app, FaultInjector(FaultConfig.everywhere(drop=1.0)))
    async with client_for(app) as client:
        with pytest.raises(httpx.TransportError) as caught:
            await client.get("/lead/")
    assert isinstance(caught.value, DroppedConnection)
    assert isinstance(caught.value, httpx.RemoteProtocolError)


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_drop_when_served_closes_the_socket(http: str) -> None:
    importlib.import_module(http)  # both ship with uvicorn[standard]: never skip
    injector = FaultInjector(FaultConfig.everywhere(drop=1.0))
    app = FaultMiddleware(ok_app, injector)
    async with served(app, http=http) as base, httpx.AsyncClient(base_url=base) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/api/v1/lead/", auth=(api_key(), ""))
        injector.disable()
        response = await client.get("/api/v1/lead/", auth=(api_key(), ""))
        assert response.status_code == 200


async def test_simulator_faults_reach_close_client() -> None:
    from closeguard.simulator.core import Simulator
    from closeguard.tools.errors import CloseConnectionError

    sim = Simulator(
        seed=5,
        leads=2,
        clock=FakeClock(),
        faults=FaultConfig(groups={"lead:write": HTTPFaults(drop=1.0)}),
    )
    async with sim.client() as close:
        page = await close.get("/lead/")
        assert len(page["data"]) == 2
        with pytest.raises(CloseConnectionError):
            await close.post("/lead/", json={"name": "never"})
    assert sim.faults is not None and sim.faults.counts["drop"] == 1
    assert len(sim.state["leads"]) == 2
