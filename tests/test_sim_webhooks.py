"""Webhook delivery: Close's signature, filters, retries, delivery faults, real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from typing import Any

import httpx
import pytest

from closeguard.simulator.clock import FakeClock
from closeguard.simulator.faults import FaultConfig, FaultInjector, WebhookFaults
from closeguard.simulator.webhooks import (
    Pause,
    PausePolicy,
    RetryPolicy,
    Subscription,
    WebhookDispatcher,
    match_extra_filter,
    sign,
    verify_signature,
    with_dispatcher,
)
from tests._secrets import signature_key
from tests._serve import served

KEY = signature_key(2)  # 64 hex chars, as Close issues them
HOOKS = "http://hooks.test"


def close_reference_signature(key_hex: str, timestamp: str, raw_body: str) -> str:
    """Close's documented algorithm, written out independently of the code under test."""
    return hmac.new(
        bytes.fromhex(key_hex), (timestamp + raw_body).encode("utf-8"), hashlib.sha256
    ).hexdigest()


class Receiver:
    """An in-process ASGI webhook endpoint answering statuses from a script (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    @property
    def event_ids(self) -> list[str]:
        return [json.loads(body)["event"]["id"] for _, body in self.requests]


def subscription(
    sub_id: str = "whsub_1", url: str = f"{HOOKS}/close", events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "url": url,
        "events": events or [{"object_type": "lead", "action": "created"}],
        "signature_key": KEY,
        "status": "active",
    }


def event(
    n: int, object_type: str = "lead", action: str = "created", **data: Any
) -> dict[str, Any]:
    return {
        "id": f"ev_{n:04d}",
        "object_type": object_type,
        "action": action,
        "object_id": f"lead_{n}",
        "lead_id": f"lead_{n}",
        "changed_fields": list(data),
        "data": {"id": f"lead_{n}", "name": f"Lead {n}", **data},
        "previous_data": {},
    }


def dispatcher_with(
    receiver: Receiver, clock: FakeClock, subs: list[dict[str, Any]] | None = None, **kwargs: Any
) -> WebhookDispatcher:
    dispatcher = WebhookDispatcher(clock, subscriptions=subs or [subscription()], **kwargs)
    dispatcher.mount(HOOKS, receiver)
    return dispatcher


# -- signing -------------------------------------------------------------------------------


def test_signature_matches_close_reference_and_hex_text_key_fails() -> None:
    body = json.dumps({"subscription_id": "whsub_1", "event": {"id": "ev_1", "name": "Zoë"}})
    ts = "1700000000"
    ours = sign(KEY, ts, body.encode())
    assert ours == close_reference_signature(KEY, ts, body)
    wrong = hmac.new(KEY.encode(), (ts + body).encode(), hashlib.sha256).hexdigest()
    assert ours != wrong
    assert verify_signature(KEY, ts, body.encode(), ours, now=1_700_000_010)
    assert not verify_signature(KEY, ts, body.encode(), wrong, now=1_700_000_010)


def test_verify_rejects_stale_tampered_and_malformed() -> None:
    body = b'{"event": {}}'
    ts = "1700000000"
    sig = sign(KEY, ts, body)
    assert verify_signature(KEY, ts, body, sig, now=1_700_000_299)
    assert not verify_signature(KEY, ts, body, sig, now=1_700_000_301)
    assert not verify_signature(KEY, ts, body, sig, now=1_699_999_000)
    assert verify_signature(KEY, ts, body, sig, tolerance=3600, now=1_700_001_000)
    assert not verify_signature(KEY, ts, body + b" ", sig, now=1_700_000_000)
    assert not verify_signature(KEY, "1700000001", body, sig, now=1_700_000_000)
    assert not verify_signature("not-hex", ts, body, sig, now=1_700_000_000)
    assert not verify_signature(KEY, "yesterday", body, sig, now=1_700_000_000)


# -- filters -------------------------------------------------------------------------------


def test_extra_filter_language() -> None:
    ev = event(1, action="updated", status_id="stat_won")
    ev["changed_fields"] = ["status_id", "name"]
    status_is = {
        "type": "field_accessor",
        "field": "data",
        "filter": {
            "type": "field_accessor",
            "field": "status_id",
            "filter": {"type": "equals", "value": "stat_won"},
        },
    }
    changed = {
        "type": "field_accessor",
        "field": "changed_fields",
        "filter": {"type": "contains", "value": "status_id"},
    }
    assert match_extra_filter(status_is, ev)
    assert match_extra_filter({"type": "and", "filters": [status_is, changed]}, ev)
    assert not match_extra_filter({"type": "not", "filter": status_is}, ev)
    assert match_extra_filter(
        {"type": "or", "filters": [{"type": "not", "filter": changed}, status_is]}, ev
    )
    missing = {"type": "field_accessor", "field": "contact_id", "filter": {"type": "is_null"}}
    assert match_extra_filter(missing, ev)
    assert not match_extra_filter({**missing, "filter": {"type": "non_null"}}, ev)
    name_has = {
        "type": "field_accessor",
        "field": "data",
        "filter": {
            "type": "field_accessor",
            "field": "name",
            "filter": {"type": "contains", "value": "ead"},
        },
    }
    assert match_extra_filter(name_has, ev)
    assert match_extra_filter({"data.status_id": "stat_won", "lead_id": "lead_1"}, ev)
    assert not match_extra_filter({"data.status_id": "stat_lost"}, ev)
    with pytest.raises(ValueError):
        match_extra_filter({"type": "regex"}, ev)


async def test_subscriber_receives_only_matching_signed_events() -> None:
    clock = FakeClock()
    receiver = Receiver()
    won_only = subscription(
        "whsub_won",
        f"{HOOKS}/won",
        [
            {
                "object_type": "lead",
                "action": "updated",
                "extra_filter": {"data.status_id": "stat_won"},
            }
        ],
    )
    paused = {**subscription("whsub_paused", f"{HOOKS}/paused"), "status": "paused"}
    dispatcher = dispatcher_with(receiver, clock, [subscription(), won_only, paused])
    dispatcher.publish(event(1))
    dispatcher.publish(event(2, object_type="contact"))
    dispatcher.publish(event(3, action="updated", status_id="stat_won"))
    dispatcher.publish(event(4, action="updated", status_id="stat_lost"))
    dispatcher.publish(event(5, action="deleted"))
    await dispatcher.drain()
    await dispatcher.aclose()
    assert receiver.event_ids == ["ev_0001", "ev_0003"]
    for headers, body in receiver.requests:
        ts = headers["close-sig-timestamp"]
        assert ts == str(int(clock.now()))
        assert headers["close-sig-hash"] == close_reference_signature(KEY, ts, body.decode())
        assert headers["content-type"] == "application/json"
    first, second = (json.loads(body) for _, body in receiver.requests)
    assert first["subscription_id"] == "whsub_1"
    assert second["subscription_id"] == "whsub_won"
    assert first["event"] == event(1)


# -- retries -------------------------------------------------------------------------------


async def test_retries_with_backoff_then_success() -> None:
    clock = FakeClock()
    start = clock.now()
    receiver = Receiver([500, 503, 404])
    dispatcher = dispatcher_with(receiver, clock, retry=RetryPolicy(base=10, factor=3))
    (delivery,) = dispatcher.publish(event(1))
    assert await dispatcher.run_due() == 1
    assert await dispatcher.run_due() == 0  # the retry is not due yet
    await dispatcher.drain()
    await dispatcher.aclose()
    assert [a.status for a in delivery.attempts] == [500, 503, 404, 200]
    assert [a.at - start for a in delivery.attempts] == [0, 10, 40, 130]
    assert delivery.state == "delivered"
    stamps = [h["close-sig-timestamp"] for h, _ in receiver.requests]
    assert len(set(stamps)) == 4, "every attempt is signed afresh"
    assert dispatcher.stats["delivered"] == 1 and dispatcher.stats["failed_attempts"] == 3


async def test_connection_errors_are_retried() -> None:
    clock = FakeClock()

    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ConnectionResetError("boom")

    dispatcher = WebhookDispatcher(
        clock, subscriptions=[subscription()], retry=RetryPolicy(max_attempts=2)
    )
    dispatcher.mount(HOOKS, broken)
    (delivery,) = dispatcher.publish(event(1))
    await dispatcher.drain()
    await dispatcher.aclose()
    assert [a.error for a in delivery.attempts] == ["ConnectionResetError"] * 2
    assert (delivery.state, delivery.drop_reason) == ("dropped", "max_attempts")


async def test_drop_after_max_attempts_and_after_max_age() -> None:
    clock = FakeClock()
    receiver = Receiver([500] * 100)
    dispatcher = dispatcher_with(receiver, clock, retry=RetryPolicy(base=1, max_attempts=4))
    (delivery,) = dispatcher.publish(event(1))
    await dispatcher.drain()
    assert len(delivery.attempts) == 4 and len(receiver.requests) == 4
    assert (delivery.state, delivery.drop_reason) == ("dropped", "max_attempts")
    assert dispatcher.stats["dropped"] == 1 and not dispatcher.pending

    aged = dispatcher_with(Receiver([500] * 100), clock, retry=RetryPolicy())
    (old,) = aged.publish(event(2))
    await aged.drain()
    await dispatcher.aclose()
    await aged.aclose()
    assert (old.state, old.drop_reason) == ("dropped", "max_age")
    assert old.attempts[-1].at - old.created_at <= 72 * 3600
    assert len(old.attempts) > 10


# -- delivery faults -----------------------------------------------------------------------


async def run_with_faults(seed: int, faults: WebhookFaults, n: int = 40) -> list[str]:
    clock = FakeClock()
    receiver = Receiver()
    dispatcher = dispatcher_with(
        receiver, clock, faults=FaultInjector(FaultConfig(webhooks=faults)), seed=seed
    )
    for i in range(n):
        dispatcher.publish(event(i))
        clock.advance(1)
        await dispatcher.run_due()
    await dispatcher.drain()
    await dispatcher.aclose()
    return receiver.event_ids


async def test_delivery_faults_are_deterministic_by_seed() -> None:
    faults = WebhookFaults(drop=0.15, duplicate=0.15, reorder=0.15, delay=0.1, delay_seconds=3)
    first = await run_with_faults(11, faults)
    assert first == await run_with_faults(11, faults)
    assert first != await run_with_faults(12, faults)
    sent = [f"ev_{i:04d}" for i in range(40)]
    assert len(set(first)) < 40, "some were dropped"
    assert len(first) > len(set(first)), "some were duplicated"
    assert first != sorted(first), "some were reordered"
    assert set(first) <= set(sent)


async def test_each_delivery_fault_alone() -> None:
    assert await run_with_faults(1, WebhookFaults(drop=1.0), n=5) == []
    doubled = await run_with_faults(1, WebhookFaults(duplicate=1.0), n=3)
    assert doubled == ["ev_0000", "ev_0000", "ev_0001", "ev_0001", "ev_0002", "ev_0002"]
    clock = FakeClock()
    receiver = Receiver()
    dispatcher = dispatcher_with(
        receiver, clock, faults=FaultConfig(webhooks=WebhookFaults(reorder=1.0)), seed=5
    )
    dispatcher.publish(event(1))
    assert await dispatcher.run_due() == 0, "held back"
    dispatcher.faults = None
    dispatcher.publish(event(2))
    await dispatcher.drain()
    assert receiver.event_ids == ["ev_0002", "ev_0001"]
    delayed = dispatcher_with(
        Receiver(), clock, faults=FaultConfig(webhooks=WebhookFaults(delay=1.0, delay_seconds=60))
    )
    (late,) = delayed.publish(event(3))
    await delayed.drain()
    await dispatcher.aclose()
    await delayed.aclose()
    assert late.attempts[0].at - late.created_at == 60
    assert late.faults == ("delayed",)


async def test_subscriptions_source_is_read_at_publish_time() -> None:
    clock = FakeClock()
    receiver = Receiver()
    subs: list[dict[str, Any]] = []
    dispatcher = WebhookDispatcher(clock, subscriptions=lambda: subs)
    dispatcher.mount(HOOKS, receiver)
    assert dispatcher.publish(event(1)) == []
    subs.append(subscription())
    assert len(dispatcher.publish(event(2))) == 1
    await dispatcher.drain()
    await dispatcher.aclose()
    assert receiver.event_ids == ["ev_0002"]
    assert "signature_key" not in repr(Subscription.from_any(subs[0]))


async def test_background_task_delivers_and_retries() -> None:
    clock = FakeClock()
    receiver = Receiver([500])
    async with dispatcher_with(receiver, clock) as dispatcher:
        dispatcher.publish(event(1))
        for _ in range(200):
            if dispatcher.stats["delivered"]:
                break
            await asyncio.sleep(0)
    assert receiver.event_ids == ["ev_0001", "ev_0001"]
    assert dispatcher.stats["delivered"] == 1


# -- real sockets --------------------------------------------------------------------------


async def test_delivery_to_a_real_local_http_receiver() -> None:
    receiver = Receiver([502])
    async with served(receiver) as base:
        dispatcher = WebhookDispatcher(
            FakeClock(), subscriptions=[subscription(url=f"{base}/hook")]
        )
        (delivery,) = dispatcher.publish(event(7))
        await dispatcher.drain()
        await dispatcher.aclose()
    assert [a.status for a in delivery.attempts] == [502, 200]
    headers, body = receiver.requests[-1]
    assert headers["close-sig-hash"] == close_reference_signature(
        KEY, headers["close-sig-timestamp"], body.decode()
    )


async def test_unreachable_url_is_a_failed_attempt() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    dispatcher = WebhookDispatcher(
        FakeClock(),
        subscriptions=[subscription(url=f"http://127.0.0.1:{port}/hook")],
        retry=RetryPolicy(max_attempts=2),
    )
    (delivery,) = dispatcher.publish(event(1))
    await dispatcher.drain()
    await dispatcher.aclose()
    assert [a.error for a in delivery.attempts] == ["ConnectError", "ConnectError"]
    assert delivery.state == "dropped"


async def test_a_reserved_name_fails_at_once_without_a_dns_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("a reserved name was looked up")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    dispatcher = WebhookDispatcher(
        FakeClock(),
        subscriptions=[subscription(url="http://runtime.test/hook")],
        retry=RetryPolicy(max_attempts=2),
    )
    (delivery,) = dispatcher.publish(event(1))
    await dispatcher.drain()
    await dispatcher.aclose()
    assert [a.error for a in delivery.attempts] == ["ConnectError", "ConnectError"]
    assert delivery.state == "dropped"


# -- end to end through the simulator ------------------------------------------------------


async def test_write_through_simulator_delivers_signed_event() -> None:
    from closeguard.simulator.core import Simulator

    clock = FakeClock()
    sim = Simulator(seed=3, leads=2, clock=clock)
    receiver = Receiver()
    sim.webhooks.mount(HOOKS, receiver)
    async with sim.http_client() as http:
        created = await http.post(
            "/webhook/",
            json={
                "url": f"{HOOKS}/close",
                "events": [{"object_type": "lead", "action": "created"}],
            },
        )
        assert created.status_code == 200, created.text
        sub = created.json()
        lead = (await http.post("/lead/", json={"name": "Signed Co"})).json()
        contact = await http.post("/contact/", json={"lead_id": lead["id"], "name": "Ann"})
        assert contact.status_code == 200
    await sim.webhooks.drain()
    await sim.webhooks.aclose()
    assert len(receiver.requests) == 1, "only lead.created is subscribed"
    headers, body = receiver.requests[0]
    ts = headers["close-sig-timestamp"]
    assert headers["close-sig-hash"] == close_reference_signature(
        sub["signature_key"], ts, body.decode()
    )
    assert verify_signature(
        sub["signature_key"], ts, body, headers["close-sig-hash"], now=clock.now()
    )
    payload = json.loads(body)
    assert payload["subscription_id"] == sub["id"]
    assert payload["event"]["object_type"] == "lead"
    assert payload["event"]["action"] == "created"
    assert payload["event"]["object_id"] == lead["id"]
    assert payload["event"]["data"]["name"] == "Signed Co"


async def test_served_simulator_delivers_to_real_receiver() -> None:
    from closeguard.simulator.core import Simulator

    sim = Simulator(seed=4, leads=1)
    receiver = Receiver()
    app = with_dispatcher(sim.app, sim.webhooks)
    async with (
        served(receiver) as hook_base,
        served(app, lifespan="on") as api_base,
        httpx.AsyncClient(base_url=f"{api_base}/api/v1", auth=(sim.api_key, "")) as http,
    ):
        sub = (
            await http.post(
                "/webhook/",
                json={
                    "url": f"{hook_base}/close",
                    "events": [{"object_type": "lead", "action": "updated"}],
                },
            )
        ).json()
        lead = (await http.post("/lead/", json={"name": "Before"})).json()
        updated = await http.put(f"/lead/{lead['id']}/", json={"name": "After"})
        assert updated.status_code == 200
        for _ in range(500):
            if receiver.requests:
                break
            await asyncio.sleep(0.01)
    assert not sim.webhooks.running, "shutdown stopped the dispatcher"
    assert len(receiver.requests) == 1
    headers, body = receiver.requests[0]
    assert verify_signature(
        sub["signature_key"], headers["close-sig-timestamp"], body, headers["close-sig-hash"]
    )
    event_sent = json.loads(body)["event"]
    assert (event_sent["action"], event_sent["data"]["name"]) == ("updated", "After")
    assert "name" in event_sent["changed_fields"]


# -- paused subscriptions ------------------------------------------------------------------

HOUR = 3600.0


class Switch:
    """An in-process webhook endpoint answering whatever ``status`` is set to now."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[float, int]] = []
        self.clock: FakeClock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        self.received.append((self.clock.now() if self.clock else 0.0, self.status))
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def run_hours(
    dispatcher: WebhookDispatcher, clock: FakeClock, hours: int, *, publish_every: int = 6
) -> None:
    """Publish an event every ``publish_every`` hours and attempt what is due, hour by hour."""
    for hour in range(hours):
        if hour % publish_every == 0:
            dispatcher.publish(event(int(clock.now())))
        await dispatcher.run_due()
        clock.advance(HOUR)


def test_pause_policy_defaults_are_closes() -> None:
    assert PausePolicy() == PausePolicy(failing_for=3 * 24 * HOUR, backlog=100_000)


async def test_failing_for_three_days_pauses_and_stops_delivery() -> None:
    clock = FakeClock()
    switch = Switch(500)
    switch.clock = clock
    record = subscription()
    dispatcher = WebhookDispatcher(clock, subscriptions=[record])
    dispatcher.mount(HOOKS, switch)
    await run_hours(dispatcher, clock, 71)
    assert record["status"] == "active" and not dispatcher.pauses, "71 h of failures"
    await run_hours(dispatcher, clock, 3)
    first_failure = switch.received[0][0]
    (pause,) = dispatcher.pauses
    assert (pause.subscription_id, pause.reason) == ("whsub_1", "failing")
    assert 72 * HOUR <= pause.at - first_failure <= 73 * HOUR
    assert record["status"] == "paused"
    assert not dispatcher.pending
    assert {d.drop_reason for d in dispatcher.deliveries} == {"max_age", "paused"}
    seen = len(switch.received)
    switch.status = 200
    await run_hours(dispatcher, clock, 24)
    assert len(switch.received) == seen, "nothing is queued for or sent to a paused subscription"
    record["status"] = "active"
    await run_hours(dispatcher, clock, 1)
    assert switch.received[-1] == (clock.now() - HOUR, 200), "delivered again once active"
    await dispatcher.aclose()


async def test_a_success_resets_the_failure_run() -> None:
    clock = FakeClock()
    switch = Switch(500)
    record = subscription()
    dispatcher = WebhookDispatcher(clock, subscriptions=[record], retry=RetryPolicy(max_delay=HOUR))
    dispatcher.mount(HOOKS, switch)
    await run_hours(dispatcher, clock, 60)
    switch.status = 200
    await run_hours(dispatcher, clock, 1)
    switch.status = 500
    await run_hours(dispatcher, clock, 60)
    assert record["status"] == "active" and not dispatcher.pauses, "two 60 h runs, not 72 h"
    await run_hours(dispatcher, clock, 14)
    assert record["status"] == "paused"
    await dispatcher.aclose()


async def test_a_backlog_pauses_only_that_subscription() -> None:
    clock = FakeClock()
    backed_up, other = subscription("whsub_full"), subscription("whsub_other", f"{HOOKS}/other")
    paused: list[Pause] = []
    dispatcher = WebhookDispatcher(
        clock,
        subscriptions=[backed_up, other],
        pause=PausePolicy(backlog=5),
        on_pause=paused.append,
    )
    dispatcher.mount(HOOKS, Receiver())
    other["events"] = [{"object_type": "lead", "action": "updated"}]
    for n in range(4):
        dispatcher.publish(event(n))
        dispatcher.publish(event(n, action="updated"))
    assert backed_up["status"] == "active" and len(dispatcher.pending) == 8
    fifth = dispatcher.publish(event(4))
    assert backed_up["status"] == "paused"
    assert paused == [Pause("whsub_full", clock.now(), "backlog")] == dispatcher.pauses
    assert [d.drop_reason for d in fifth] == ["paused"]
    assert {d.subscription_id for d in dispatcher.pending} == {"whsub_other"}
    assert dispatcher.publish(event(5)) == [], "no new event is queued while paused"
    await dispatcher.aclose()


async def test_queued_deliveries_of_a_paused_subscription_are_not_attempted() -> None:
    clock = FakeClock()
    receiver = Receiver()
    record = subscription()
    dispatcher = dispatcher_with(receiver, clock, [record])
    queued = [dispatcher.publish(event(n))[0] for n in range(3)]
    record["status"] = "paused"  # as PUT /webhook/{id}/ {"status": "paused"} does
    await dispatcher.drain()
    await dispatcher.aclose()
    assert receiver.requests == []
    assert [d.drop_reason for d in queued] == ["paused"] * 3


async def test_simulator_shows_the_pause_and_resumes_when_set_active() -> None:
    from closeguard.simulator.core import Simulator

    clock = FakeClock()
    sim = Simulator(seed=3, leads=1, clock=clock)
    sim.webhooks.pause = PausePolicy(failing_for=2 * HOUR)
    switch = Switch(503)
    sim.webhooks.mount(HOOKS, switch)
    async with sim.http_client() as http:
        sub = (
            await http.post(
                "/webhook/",
                json={
                    "url": f"{HOOKS}/close",
                    "events": [{"object_type": "lead", "action": "created"}],
                },
            )
        ).json()
        for n in range(4):
            await http.post("/lead/", json={"name": f"Failing {n}"})
            await sim.webhooks.run_due()
            clock.advance(HOUR)
        assert sim.webhooks.pauses and sim.webhooks.pauses[0].reason == "failing"
        listed = (await http.get("/webhook/")).json()["data"]
        assert [h["status"] for h in listed if h["id"] == sub["id"]] == ["paused"]
        assert (await http.get(f"/webhook/{sub['id']}/")).json()["status"] == "paused"

        switch.status = 200
        missed = (await http.post("/lead/", json={"name": "Missed"})).json()
        await sim.webhooks.drain()
        assert all(status == 503 for _, status in switch.received)
        params = {"object_type": "lead", "action": "created"}
        log = (await http.get("/event/", params=params)).json()["data"]
        assert missed["id"] in {e["object_id"] for e in log}, "recoverable from the Event Log"

        resumed = await http.put(f"/webhook/{sub['id']}/", json={"status": "active"})
        assert resumed.json()["status"] == "active"
        fresh = (await http.post("/lead/", json={"name": "Fresh"})).json()
        await sim.webhooks.drain()
    await sim.webhooks.aclose()
    assert switch.received[-1][1] == 200
    assert len(switch.received) == sim.webhooks.stats["attempts"]
    delivered = [d for d in sim.webhooks.deliveries if d.state == "delivered"]
    assert [d.payload["event"]["object_id"] for d in delivered] == [fresh["id"]]
