"""The webhook receiver (workflows/receiver.py): 200 only once stored, 401/400/413 for bad
deliveries with nothing stored, never a 500 for anything a sender can send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.simulator import Simulator
from closeguard.simulator.faults import FaultConfig, WebhookFaults
from closeguard.store import Store
from closeguard.tools import FakeClock
from closeguard.tools.webhooks import compute_signature
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.receiver import DEFAULT_PATH, WebhookReceiver, serve
from tests._hooks import lead_created_flow, subscribe_lead_created
from tests._secrets import signature_key

KEY = signature_key(5)
NOW = 1_700_000_000


class MemoryInbox:
    """The inbox's ``add`` contract in memory: dedup by event id, True when new."""

    def __init__(self) -> None:
        self.events: dict[str, Mapping[str, Any]] = {}
        self.sources: list[str] = []
        self.batches: list[int] = []

    async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
        self.batches.append(len(events))
        new = 0
        for event in events:
            self.sources.append(source)
            if event["id"] not in self.events:
                self.events[event["id"]] = event
                new += 1
        return new


class Response:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: Any,
    body_chunks: list[bytes],
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    path: str = DEFAULT_PATH,
    consumed: list[int] | None = None,
) -> Response:
    """Drive the ASGI app directly; ``consumed`` collects how many chunks it read."""
    chunks = list(body_chunks) or [b""]
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads > len(chunks):
            return {"type": "http.disconnect"}
        return {
            "type": "http.request",
            "body": chunks[reads - 1],
            "more_body": reads < len(chunks),
        }

    response = Response()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            response.body += message.get("body", b"")

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    await app(scope, receive, send)
    if consumed is not None:
        consumed.append(reads)
    return response


def delivery(event_id: str = "ev_1", **event: Any) -> bytes:
    payload = {"subscription_id": "whsub_1", "event": {"id": event_id, **event}}
    return json.dumps(payload).encode()


def signed(body: bytes, *, at: int = NOW, key: str = KEY) -> dict[str, str]:
    stamp = str(at)
    return {"close-sig-timestamp": stamp, "close-sig-hash": compute_signature(key, stamp, body)}


def receiver(inbox: Any = None, **kwargs: Any) -> WebhookReceiver:
    kwargs.setdefault("clock", FakeClock(start=NOW))
    return WebhookReceiver(inbox or MemoryInbox(), [KEY], **kwargs)


async def test_a_signed_delivery_is_stored_once() -> None:
    inbox = MemoryInbox()
    app = receiver(inbox)
    body = delivery("ev_1", object_type="lead", action="created")
    first = await call(app, [body], signed(body))
    again = await call(app, [body], signed(body))
    assert (first.status, first.json) == (200, {"status": "stored"})
    assert (again.status, again.json) == (200, {"status": "stored"})
    assert list(inbox.events) == ["ev_1"] and inbox.sources == ["webhook", "webhook"]
    assert inbox.events["ev_1"]["object_type"] == "lead"
    assert app.stats == {"stored": 2} and app.group.new == 1


async def test_it_answers_only_after_the_inbox_has_stored_the_event() -> None:
    release = asyncio.Event()
    stored: list[str] = []

    class SlowInbox:
        async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
            await release.wait()
            stored.extend(e["id"] for e in events)
            return len(events)

    app = receiver(SlowInbox())
    body = delivery()
    task = asyncio.create_task(call(app, [body], signed(body)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done(), "no answer while the event is not stored"
    release.set()
    response = await task
    assert response.status == 200 and stored == ["ev_1"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unauthorized_missing"),
        ({"close-sig-timestamp": str(NOW)}, "unauthorized_missing"),
        ({"close-sig-timestamp": "soon", "close-sig-hash": "00"}, "unauthorized_malformed"),
        (signed(delivery(), key="ab" * 32), "unauthorized_mismatch"),
        (signed(delivery(), at=NOW - 301), "unauthorized_stale"),
        (signed(delivery(), at=NOW + 301), "unauthorized_stale"),
        (signed(delivery("ev_other")), "unauthorized_mismatch"),
    ],
)
async def test_bad_signatures_are_401_and_store_nothing(
    headers: dict[str, str], reason: str
) -> None:
    inbox = MemoryInbox()
    app = receiver(inbox)
    response = await call(app, [delivery()], headers)
    assert response.status == 401 and "error" in response.json
    assert inbox.events == {} and app.stats == {reason: 1}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'{"subscription_id": "whsub_1"}',
        b'{"event": "ev_1"}',
        b'{"event": {"object_type": "lead"}}',
        b'{"event": {"id": ""}}',
        b'{"event": {"id": 17}}',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000,
        b'{"event": {"id": "ev_1", "n": ' + b"9" * 5000 + b"}}",
    ],
)
async def test_malformed_bodies_are_400_and_store_nothing(body: bytes) -> None:
    inbox = MemoryInbox()
    response = await call(receiver(inbox), [body], signed(body))
    assert response.status == 400 and inbox.events == {}


async def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    inbox, consumed = MemoryInbox(), list[int]()
    body = delivery(pad="x" * 200)
    headers = {**signed(body), "content-length": str(len(body))}
    response = await call(receiver(inbox, max_body=100), [body], headers, consumed=consumed)
    assert response.status == 413 and consumed == [0] and inbox.events == {}


async def test_an_undeclared_oversized_body_stops_being_read_past_the_cap() -> None:
    inbox, consumed = MemoryInbox(), list[int]()
    chunks = [b"x" * 64] * 50
    response = await call(receiver(inbox, max_body=100), chunks, {}, consumed=consumed)
    assert response.status == 413 and consumed == [2] and inbox.events == {}


async def test_a_bad_content_length_is_400() -> None:
    response = await call(receiver(), [delivery()], {"content-length": "-5"})
    assert response.status == 400


async def test_an_inbox_failure_is_503_so_close_retries() -> None:
    class BrokenInbox:
        async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
            raise OSError("disk full")

    class StuckInbox:
        async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
            await asyncio.Event().wait()
            return 0

    body = delivery()
    assert (await call(receiver(BrokenInbox()), [body], signed(body))).status == 503
    stuck = receiver(StuckInbox(), store_timeout=0.01)
    assert (await call(stuck, [body], signed(body))).status == 503


async def test_deliveries_arriving_during_a_commit_share_the_next_one() -> None:
    gate = asyncio.Event()
    inbox = MemoryInbox()

    class GatedInbox:
        async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
            await gate.wait()
            return await inbox.add_many(events, source=source)

    app = receiver(GatedInbox())
    bodies = [delivery(f"ev_{i}") for i in range(11)]
    first = asyncio.create_task(call(app, [bodies[0]], signed(bodies[0])))
    for _ in range(5):
        await asyncio.sleep(0)
    rest = [asyncio.create_task(call(app, [b], signed(b))) for b in bodies[1:]]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not first.done() and not any(t.done() for t in rest)
    gate.set()
    answers = await asyncio.gather(first, *rest)
    assert [a.status for a in answers] == [200] * 11
    assert inbox.batches == [1, 10] and app.group.commits == 2 and len(inbox.events) == 11


async def test_keys_are_reloaded_when_a_delivery_matches_none() -> None:
    stored_keys: list[str] = []
    inbox = MemoryInbox()
    clock = FakeClock(start=NOW)
    app = WebhookReceiver(inbox, lambda: list(stored_keys), clock=clock, reload_interval=5)
    body = delivery()
    assert (await call(app, [body], signed(body))).status == 401
    stored_keys.append(KEY)  # `webhooks sync` stored a key meanwhile
    assert (await call(app, [body], signed(body))).status == 401, "not re-read within 5 s"
    clock.advance(5)
    assert (await call(app, [body], signed(body))).status == 200


async def test_unreadable_keys_are_503_until_they_can_be_read() -> None:
    readable = False

    def keys() -> list[str]:
        if not readable:
            raise OSError("store unreachable")
        return [KEY]

    inbox = MemoryInbox()
    app = WebhookReceiver(inbox, keys, clock=FakeClock(start=NOW))
    body = delivery()
    assert (await call(app, [body], signed(body))).status == 503
    readable = True
    assert (await call(app, [body], signed(body))).status == 200
    assert list(inbox.events) == ["ev_1"] and app.stats["keys_unavailable"] == 1


async def test_health_unknown_paths_and_methods() -> None:
    app = receiver()
    assert (await call(app, [], method="GET", path="/healthz")).status == 200
    assert (await call(app, [], path="/elsewhere")).status == 404
    wrong = await call(app, [], method="GET")
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"


_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_bodies = (
    st.binary(max_size=300)
    | _json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"event": _json_values}).map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_bodies,
    headers=st.dictionaries(
        st.sampled_from(["close-sig-hash", "close-sig-timestamp", "content-length", "x-other"]),
        _header_text,
    ),
    sign_it=st.booleans(),
)
def test_fuzzed_deliveries_never_fail_the_server(
    body: bytes, headers: dict[str, str], sign_it: bool
) -> None:
    inbox = MemoryInbox()
    app = receiver(inbox, max_body=200)
    if sign_it:
        headers = {**headers, **signed(body)}
    response = asyncio.run(call(app, [body[:150], body[150:]], headers))
    assert response.status in (200, 400, 401, 413)
    assert "error" in response.json or response.status == 200
    if response.status != 200:
        assert inbox.events == {}
    else:
        assert sign_it and len(inbox.events) == 1


async def test_the_simulators_deliveries_land_in_the_inbox() -> None:
    clock = FakeClock()
    sim = Simulator(seed=5, leads=2, clock=clock)
    async with sim.client() as client:
        hook = await subscribe_lead_created(client)
        inbox = MemoryInbox()
        sim.webhooks.mount(
            "http://hooks.test", WebhookReceiver(inbox, [hook["signature_key"]], clock=clock)
        )
        lead = await client.post("/lead/", json={"name": "Delivered Co"})
    await sim.webhooks.drain()
    (event,) = inbox.events.values()
    assert (event["object_id"], event["action"]) == (lead["id"], "created")
    assert [a.status for d in sim.webhooks.deliveries for a in d.attempts] == [200]


async def test_served_on_uvicorn_with_the_real_inbox(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    inbox = Inbox(store, [])
    app = WebhookReceiver(inbox, lambda: [KEY], max_body=10_000)

    def signed_now(body: bytes, *, shift: int = 0, key: str = KEY) -> dict[str, str]:
        stamp = str(int(app.clock.now()) + shift)
        return {"close-sig-timestamp": stamp, "close-sig-hash": compute_signature(key, stamp, body)}

    async def stream() -> Any:
        for _ in range(100):
            yield b"y" * 1000

    body = delivery("ev_served")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        statuses = [
            (await http.post(DEFAULT_PATH, content=content, headers=headers)).status_code
            for content, headers in [
                (body, signed_now(body)),
                (body, signed_now(body)),
                (delivery("ev_forged"), signed_now(delivery("ev_forged"), key="ab" * 32)),
                (delivery("ev_stale"), signed_now(delivery("ev_stale"), shift=-400)),
                (b"{not json", signed_now(b"{not json")),
                (b"x" * 20_000, signed_now(body)),
                (stream(), signed_now(body)),
            ]
        ]
    assert statuses == [200, 200, 401, 401, 400, 413, 413]
    assert [r.event_id for r in inbox.rows.recent()] == ["ev_served"]
    store.dispose()


async def test_duplicated_deliveries_make_one_event_and_one_run(tmp_path: Path) -> None:
    clock = FakeClock()
    faults = FaultConfig(webhooks=WebhookFaults(duplicate=1.0))
    sim = Simulator(seed=5, leads=1, clock=clock, faults=faults)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    flow = lead_created_flow()
    inbox = Inbox(store, [flow])
    async with sim.client() as client:
        hook = await subscribe_lead_created(client)
        app = WebhookReceiver(inbox, [hook["signature_key"]], clock=clock)
        sim.webhooks.mount("http://hooks.test", app)
        leads = [(await client.post("/lead/", json={"name": f"Twice {i}"}))["id"] for i in range(3)]
    await sim.webhooks.drain()
    assert sim.webhooks.stats["duplicated"] == 3
    assert app.stats == {"stored": 6} and app.group.new == 3
    runs = await inbox.queue.list(workflow="on-new-lead")
    assert sorted(r.lead_id or "" for r in runs) == sorted(leads)
    assert all(inbox.rows.get(r.trigger_key) is not None for r in runs)
