"""Compatibility: the official ``closeio`` client drives the simulator served over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import uvicorn
from closeio_api import API, APIError, ValidationError

from closeguard.simulator import Simulator
from closeguard.simulator.webhooks import with_dispatcher
from tests._secrets import api_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(seed=11, leads=12)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            with_dispatcher(sim.app, sim.webhooks),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("simulator did not start")
        time.sleep(0.01)
    try:
        yield sim, f"http://127.0.0.1:{port}/api/v1/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def api(served: tuple[Simulator, str]) -> API:
    sim, base_url = served
    return API(base_url, api_key=sim.api_key, max_retries=1)


def test_official_client_workflow(served: tuple[Simulator, str], api: API) -> None:
    sim, _ = served
    start = len(sim.events)
    lead = api.post(
        "lead",
        {
            "name": "Official Client Co",
            "contacts": [
                {"name": "Olga", "emails": [{"email": "olga@official.example"}]},
                {"name": "Otto"},
            ],
        },
    )
    assert lead["id"].startswith("lead_") and len(lead["contacts"]) == 2

    seen: list[str] = []
    skip = 0
    while True:
        page = api.get("lead", params={"_skip": skip, "_limit": 5})
        seen += [item["id"] for item in page["data"]]
        skip += len(page["data"])
        if not page["has_more"]:
            break
    assert len(seen) == len(set(seen)) == page["total_results"] == 13
    found = api.get("lead", params={"query": "email:olga@official.example"})
    assert [item["id"] for item in found["data"]] == [lead["id"]]

    updated = api.put(f"lead/{lead['id']}", {"description": "via closeio"})
    assert updated["description"] == "via closeio" and updated["name"] == lead["name"]

    statuses = api.get("status/opportunity")["data"]
    won = next(s["id"] for s in statuses if s["type"] == "won")
    opp = api.post("opportunity", {"lead_id": lead["id"], "value": 120000})
    moved = api.put(f"opportunity/{opp['id']}", {"status_id": won})
    assert moved["status_type"] == "won" and moved["date_won"]

    task = api.post("task", {"lead_id": lead["id"], "text": "Send contract"})
    assert api.put(f"task/{task['id']}", {"is_complete": True})["is_complete"] is True
    note = api.post("activity/note", {"lead_id": lead["id"], "note": "Signed!"})
    assert note["_type"] == "Note"

    other = api.post("lead", {"name": "Duplicate Co", "contacts": [{"name": "Dup"}]})
    merged = api.post("lead/merge", {"source": other["id"], "destination": lead["id"]})
    assert {c["name"] for c in merged["contacts"]} == {"Olga", "Otto", "Dup"}

    me = api.get("me")
    assert me["organizations"][0]["id"] == sim.state.organization_id

    assert api.delete(f"lead/{lead['id']}") == {}
    with pytest.raises(APIError) as missing:
        api.get(f"lead/{lead['id']}")
    assert missing.value.response.status_code == 404

    actions = {(e["object_type"], e["action"]) for e in sim.events[start:]}
    assert {
        ("lead", "created"),
        ("contact", "created"),
        ("lead", "updated"),
        ("opportunity", "updated"),
        ("activity.opportunity_status_change", "created"),
        ("task", "completed"),
        ("activity.note", "created"),
        ("lead", "merged"),
        ("lead", "deleted"),
        ("contact", "deleted"),
        ("task", "deleted"),
        ("opportunity", "deleted"),
        ("activity.note", "deleted"),
    } <= actions

    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"lead_id": lead["id"], "_limit": 10}
    while True:
        page = api.get("event", params=params)
        events += page["data"]
        if not page["cursor_next"]:
            break
        params["_cursor"] = page["cursor_next"]
    assert events[0]["action"] == "deleted" and events[-1]["action"] == "created"
    assert len(events) == len({e["id"] for e in events})


def test_official_client_sees_validation_errors(api: API) -> None:
    with pytest.raises(ValidationError) as bad:
        api.post("contact", {"name": "orphan"})
    assert "lead_id" in bad.value.field_errors
    with pytest.raises(ValidationError):
        api.get("lead", params={"_limit": 5000})
    wrong = API(api.base_url, api_key=api_key("_wrong"), max_retries=1)
    with pytest.raises(APIError) as denied:
        wrong.get("me")
    assert denied.value.response.status_code == 401


class _Receiver(BaseHTTPRequestHandler):
    """A plain stdlib webhook endpoint: records (headers, raw body), answers 200."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


def _close_signature_ok(signature_key: str, headers: dict[str, str], body: bytes) -> bool:
    """Close's published check, written here independently of closeguard's."""
    data = headers["close-sig-timestamp"] + body.decode("utf-8")
    expected = hmac.new(bytes.fromhex(signature_key), data.encode("utf-8"), hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), headers["close-sig-hash"])


def test_official_client_webhook_deliveries_are_signed(api: API) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    _Receiver.received = []
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/close-hook"
        sub = api.post(
            "webhook",
            {
                "url": url,
                "events": [
                    {"object_type": "lead", "action": "created"},
                    {"object_type": "opportunity", "action": "updated"},
                ],
            },
        )
        assert len(sub["signature_key"]) == 64
        lead = api.post("lead", {"name": "Hooked Co"})
        statuses = api.get("status/opportunity")["data"]
        lost = next(s["id"] for s in statuses if s["type"] == "lost")
        opp = api.post("opportunity", {"lead_id": lead["id"]})
        api.put(f"opportunity/{opp['id']}", {"status_id": lost})
        api.post("activity/note", {"lead_id": lead["id"], "note": "not subscribed"})
        deadline = time.monotonic() + 10
        while len(_Receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # a third, unwanted delivery would have arrived by now
    finally:
        receiver.shutdown()
        api.delete(f"webhook/{sub['id']}")

    assert len(_Receiver.received) == 2
    kinds = set()
    for headers, body in _Receiver.received:
        assert _close_signature_ok(sub["signature_key"], headers, body)
        wrong_key = ("1" if sub["signature_key"][0] == "0" else "0") + sub["signature_key"][1:]
        assert not _close_signature_ok(wrong_key, headers, body)
        payload = json.loads(body)
        assert payload["subscription_id"] == sub["id"]
        event = payload["event"]
        kinds.add((event["object_type"], event["action"]))
        if event["object_type"] == "opportunity":
            assert "status_id" in event["changed_fields"]
            assert event["previous_data"]["status_id"] != lost
    assert kinds == {("lead", "created"), ("opportunity", "updated")}
    hexless = hmac.new(sub["signature_key"].encode(), b"x", hashlib.sha256).hexdigest()
    assert hexless != _Receiver.received[0][0]["close-sig-hash"]
