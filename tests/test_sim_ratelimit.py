"""Rate limits on fake time: header on every response, per-key and per-org limits, 429 shape."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from closeguard.simulator.clock import FakeClock
from closeguard.simulator.core import Simulator
from closeguard.simulator.faults import FaultConfig
from closeguard.simulator.ratelimit import (
    ANONYMOUS_KEY,
    DEFAULT_GROUP,
    UNAUTHENTICATED_ORG,
    Callers,
    RateLimiter,
    RateLimitMiddleware,
    RateLimits,
    credential_id,
    rate_group_for,
)
from tests._secrets import api_key

KEY_ONE, SECOND_KEY = api_key("_one"), api_key("_second")
KEY_A, KEY_B, KEY_C, KEY_D = (api_key(f"_{c}") for c in "abcd")
HEADER = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+(?:\.\d+)?)$")


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 401 without credentials, 404 for /missing, else 200 JSON."""
    headers = dict(scope["headers"])
    status = 200
    if b"authorization" not in headers:
        status = 401
    elif scope["path"].endswith("/missing/"):
        status = 404
    body = json.dumps({"path": scope["path"]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_for(app: Any, key: str | None = KEY_ONE) -> httpx.AsyncClient:
    auth = httpx.BasicAuth(key, "") if key else None
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim/api/v1", auth=auth
    )


def parse(header: str) -> tuple[int, int, float]:
    found = HEADER.match(header)
    assert found, header
    return int(found[1]), int(found[2]), float(found[3])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_700_000_000.563)


def test_groups_come_from_the_catalog() -> None:
    assert rate_group_for("GET", "/api/v1/lead/lead_abc/") == "lead:read"
    assert rate_group_for("POST", "/api/v1/lead/") == "lead:write"
    assert rate_group_for("POST", "/api/v1/data/search/") == "data:read"
    assert rate_group_for("GET", "/api/v1/nothing/here/") == DEFAULT_GROUP


def test_limits_resolution() -> None:
    limits = RateLimits(groups={"lead:read": 5})
    assert limits.key_limit("lead:read") == 5
    assert limits.key_limit("contact:read") == 40
    assert limits.key_limit("contact:write") == 20
    assert limits.org_limit("lead:read") == 15
    assert RateLimits(rps=7).key_limit("lead:write") == 7
    assert RateLimits(rps=7, window=2).key_limit("task:read") == 14


async def test_header_on_every_response_with_decimal_reset(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(rps=10), clock)
    app = RateLimitMiddleware(tiny_app, limiter)
    async with client_for(app) as client:
        ok = await client.get("/lead/lead_1/")
        missing = await client.get("/lead/missing/")
    assert ok.status_code == 200 and missing.status_code == 404
    assert parse(ok.headers["RateLimit"]) == (10, 9, pytest.approx(0.437))
    assert ok.headers["RateLimit"].endswith("reset=0.437")
    assert parse(missing.headers["RateLimit"])[:2] == (10, 8)


async def test_no_credentials_have_a_budget_of_their_own(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(rps=2), clock)
    app = RateLimitMiddleware(tiny_app, limiter)
    async with client_for(app, key=None) as client:
        answers = [await client.get("/lead/") for _ in range(3)]
    async with client_for(app) as client:
        keyed = await client.get("/lead/")
    assert [r.status_code for r in answers] == [401, 401, 429]
    assert parse(answers[0].headers["RateLimit"])[:2] == (2, 1)
    assert limiter.allowed[ANONYMOUS_KEY] == 2 and limiter.rejected[ANONYMOUS_KEY] == 1
    assert keyed.status_code == 200
    assert parse(keyed.headers["RateLimit"])[:2] == (2, 1)


async def test_429_shape_and_window_reset(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(groups={"lead:read": 3}), clock)
    app = RateLimitMiddleware(tiny_app, limiter)
    async with client_for(app) as client:
        statuses = [(await client.get("/lead/")).status_code for _ in range(3)]
        clock.advance(0.2)
        refused = await client.get("/lead/")
        other_group = await client.get("/contact/")
        clock.advance(0.237)
        after_reset = await client.get("/lead/")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {
        "error": {"message": "API call count exceeded for this period", "rate_reset": 0.237}
    }
    assert parse(refused.headers["RateLimit"]) == (3, 0, pytest.approx(0.237))
    assert other_group.status_code == 200
    assert after_reset.status_code == 200
    assert parse(after_reset.headers["RateLimit"]) == (3, 2, 1.0)
    assert after_reset.headers["RateLimit"].endswith("reset=1")


async def test_retry_after_rounds_up_on_long_windows(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(rps=1, window=5), clock)
    decisions = [limiter.hit("lead:read", "k", "o") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    refused = decisions[-1]
    assert refused.reset == pytest.approx(4.437)
    assert refused.retry_after == 5


async def test_per_key_and_per_org_limits(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(groups={"lead:read": 2}), clock)
    app = RateLimitMiddleware(tiny_app, limiter)
    results: dict[str, list[int]] = {}
    for key in (KEY_A, KEY_B, KEY_C, KEY_D):
        async with client_for(app, key) as client:
            results[key] = [(await client.get("/lead/")).status_code for _ in range(3)]
    # Each key gets 2 per window; the organization 6: the fourth key finds it exhausted.
    assert results[KEY_A] == results[KEY_B] == results[KEY_C] == [200, 200, 429]
    assert results[KEY_D] == [429, 429, 429]
    async with client_for(app, KEY_D) as client:
        refused = await client.get("/lead/")
        assert parse(refused.headers["RateLimit"])[:2] == (6, 0)
        clock.advance(1)
        assert (await client.get("/lead/")).status_code == 200
    assert limiter.rejected[credential_id_of(KEY_D)] == 4


def credential_id_of(key: str) -> str:
    token = base64.b64encode(f"{key}:".encode()).decode()
    found = credential_id({"headers": [(b"authorization", f"Basic {token}".encode())]})
    assert found is not None
    return found


def test_credential_is_hashed_never_kept() -> None:
    kid = credential_id_of(KEY_ONE)
    assert api_key() not in kid
    assert kid == credential_id_of(KEY_ONE) != credential_id_of(KEY_A)
    bearer = credential_id({"headers": [(b"authorization", b"Bearer tok_123")]})
    assert bearer is not None and "tok_123" not in bearer
    assert credential_id({"headers": []}) is None


async def test_bearer_tokens_are_limited_too(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(rps=1), clock)
    app = RateLimitMiddleware(tiny_app, limiter)
    headers = {"Authorization": "Bearer oauth_token"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim/api/v1"
    ) as client:
        first = await client.get("/me/", headers=headers)
        second = await client.get("/me/", headers=headers)
    assert (first.status_code, second.status_code) == (200, 429)


async def test_disabled_limits_allow_everything(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimits(rps=1, enabled=False), clock)
    assert all(limiter.hit("lead:read", "k", "o").allowed for _ in range(50))


async def test_simulator_rate_limits_per_key_and_client_paces(clock: FakeClock) -> None:
    sim = Simulator(
        seed=2, leads=3, clock=clock, rate_limits=RateLimits(rps=2), api_keys=[SECOND_KEY]
    )
    async with sim.http_client() as first:
        answers = [await first.get("/lead/") for _ in range(3)]
        unauthenticated = await first.get("/lead/", auth=None)
        async with sim.http_client(auth=(SECOND_KEY, "")) as second:
            other = await second.get("/lead/")
        bad_key = await first.get("/me/", auth=("no_such_key", ""))
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["rate_reset"] == pytest.approx(0.437)
    assert all("RateLimit" in r.headers for r in answers)
    assert unauthenticated.status_code == 401 and "RateLimit" in unauthenticated.headers
    assert other.status_code == 200
    assert bad_key.status_code == 401 and "RateLimit" in bad_key.headers


async def test_cached_child_index_follows_writes() -> None:
    """Reads reuse a lead -> children index (the list hot path); every write refreshes it."""
    sim = Simulator(seed=9, leads=4, clock=FakeClock())
    async with sim.http_client() as http:
        source, destination = list(sim.state["leads"])[:2]

        async def contacts_of(lead_id: str) -> set[str]:
            one = (await http.get(f"/lead/{lead_id}/")).json()
            listed = (await http.get("/lead/", params={"_limit": 200})).json()["data"]
            in_list = next(lead for lead in listed if lead["id"] == lead_id)
            assert {c["id"] for c in in_list["contacts"]} == {c["id"] for c in one["contacts"]}
            return {c["id"] for c in one["contacts"]}

        before_src, before_dst = await contacts_of(source), await contacts_of(destination)
        added = (await http.post("/contact/", json={"lead_id": destination, "name": "New"})).json()
        assert await contacts_of(destination) == before_dst | {added["id"]}
        merged = await http.post(
            "/lead/merge/", json={"source": source, "destination": destination}
        )
        assert merged.status_code == 200, merged.text
        assert await contacts_of(destination) == before_dst | before_src | {added["id"]}


async def test_default_simulator_sends_ratelimit_header_without_throttling() -> None:
    sim = Simulator(seed=1, leads=2)
    async with sim.http_client() as http:
        response = await http.get("/lead/")
    assert response.status_code == 200
    assert re.fullmatch(
        r"limit=\d+, remaining=\d+, reset=\d+(\.\d+)?", response.headers["ratelimit"]
    )
    assert Simulator(seed=1, leads=2, rate_limits=None).limiter is None


def basic(key: str) -> tuple[bytes, bytes]:
    return b"authorization", b"Basic " + base64.b64encode(f"{key}:".encode())


def test_callers_charge_bad_and_missing_credentials_to_their_own_budget() -> None:
    callers = Callers(org_of=lambda _scope, key_id: "orga_1" if key_id == GOOD else None)
    GOOD = credential_id_of("good")
    assert callers({"headers": [basic("good")]}) == (GOOD, "orga_1")
    assert callers({"headers": [basic("bad")]}) == (credential_id_of("bad"), UNAUTHENTICATED_ORG)
    assert callers({"headers": []}) == (ANONYMOUS_KEY, UNAUTHENTICATED_ORG)


async def test_every_simulator_response_carries_the_header(clock: FakeClock) -> None:
    sim = Simulator(seed=2, leads=2, clock=clock, rate_limits=RateLimits(rps=50))
    async with sim.http_client() as http:
        answers = [
            (200, await http.get("/lead/")),
            (401, await http.get("/lead/", auth=None)),
            (401, await http.get("/me/", auth=("no_such_key", ""))),
            (404, await http.get("/no/such/path/")),
            (405, await http.delete("/lead/")),
            (
                415,
                await http.post(
                    "/lead/", content=b"name=x", headers={"content-type": "text/plain"}
                ),
            ),
            (
                400,
                await http.post(
                    "/lead/", content=b"{not json", headers={"content-type": "application/json"}
                ),
            ),
        ]
    for status, response in answers:
        assert response.status_code == status, response.text
        assert HEADER.match(response.headers["RateLimit"]), status


async def test_bad_keys_do_not_spend_the_organization_budget(clock: FakeClock) -> None:
    """A flood of bad or missing keys is refused on its own budget; valid keys keep theirs."""
    sim = Simulator(
        seed=2, leads=2, clock=clock, rate_limits=RateLimits(rps=5), api_keys=[SECOND_KEY]
    )
    flood: list[int] = []
    async with sim.http_client() as http:
        for n in range(40):
            auth = None if n % 4 == 0 else (f"bad_key_{n % 3}", "")
            flood.append((await http.get("/lead/", auth=auth)).status_code)
        first = [await http.get("/lead/") for _ in range(5)]
        async with sim.http_client(auth=(SECOND_KEY, "")) as second:
            other = [await second.get("/lead/") for _ in range(5)]
    assert [r.status_code for r in first + other] == [200] * 10
    assert [parse(r.headers["RateLimit"])[:2] for r in first] == [(5, n) for n in range(4, -1, -1)]
    assert parse(other[0].headers["RateLimit"])[:2] == (5, 4)
    assert set(flood) == {401, 429}
    assert flood.count(401) == 15, "3x the key limit: the unauthenticated organization budget"


async def test_fault_responses_carry_the_callers_header(clock: FakeClock) -> None:
    sim = Simulator(
        seed=2,
        leads=2,
        clock=clock,
        rate_limits=RateLimits(rps=5),
        faults=FaultConfig.everywhere(error_500=1.0),
    )
    async with sim.http_client() as http:
        failed = [await http.get("/lead/") for _ in range(2)]
        sim.faults.disable()  # type: ignore[union-attr]
        ok = await http.get("/lead/")
    assert [r.status_code for r in failed] == [500, 500]
    assert [parse(r.headers["RateLimit"])[:2] for r in failed] == [(5, 5), (5, 5)]
    assert parse(ok.headers["RateLimit"])[:2] == (5, 4)
