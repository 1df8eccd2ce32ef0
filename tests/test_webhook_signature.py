"""Close webhook signatures (tools/webhooks.py): a fixed vector, freshness, the simulator's
real deliveries."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeguard.simulator import Simulator
from closeguard.tools import FakeClock
from closeguard.tools.webhooks import SignatureVerifier, Verdict, compute_signature
from tests._hooks import subscribe_lead_created
from tests._secrets import signature_key

# Computed outside Python:
# printf '%s' "$TS$BODY" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY
# KEY is tests/_secrets.py's signature_key(3) under the default known key, written out: a
# fixed vector cannot follow CLOSEGUARD_TEST_SIGNATURE_KEY.
KEY = "5ec7e75d0c105e90a7d5ec7e75d7e57500000000000000000000000000000003"
TS = "1700000000"
BODY = b'{"subscription_id":"whsub_1","event":{"id":"ev_1"}}'
EXPECTED = "688b26c7454f93b8c6a3ea001ca322d53e6cbbfa1a7785d8d4e03b943afc40ad"
# The same with the hex *text* as the key (openssl -hmac $KEY): what a wrong receiver computes.
KEYED_WITH_HEX_TEXT = "1c59b37a4c4e40908e43766ab62bee1628448ca47fda0e69da3ee2d6864f76b6"


def verifier(now: float = 1_700_000_000, keys: tuple[str, ...] = (KEY,)) -> SignatureVerifier:
    return SignatureVerifier(keys, clock=FakeClock(start=now))


def test_fixed_vector() -> None:
    assert compute_signature(KEY, TS, BODY) == EXPECTED
    assert verifier().check(TS, EXPECTED, BODY) is Verdict.VALID
    assert verifier().check(TS, EXPECTED.upper(), BODY) is Verdict.VALID


def test_a_signature_keyed_with_the_hex_text_is_refused() -> None:
    assert verifier().check(TS, KEYED_WITH_HEX_TEXT, BODY) is Verdict.MISMATCH


@pytest.mark.parametrize(
    ("timestamp", "body", "signature"),
    [
        (TS, BODY + b" ", EXPECTED),
        (TS, BODY.replace(b"ev_1", b"ev_2"), EXPECTED),
        ("1700000001", BODY, EXPECTED),
        (TS, BODY, EXPECTED[:-1] + "0"),
        (TS, BODY, EXPECTED[:32]),
    ],
)
def test_any_change_is_a_mismatch(timestamp: str, body: bytes, signature: str) -> None:
    assert verifier().check(timestamp, signature, body) is Verdict.MISMATCH


@pytest.mark.parametrize(("offset", "verdict"), [(300, Verdict.VALID), (301, Verdict.STALE)])
def test_timestamps_more_than_five_minutes_away_are_refused(offset: int, verdict: Verdict) -> None:
    for now in (1_700_000_000 + offset, 1_700_000_000 - offset):
        assert verifier(now).check(TS, EXPECTED, BODY) is verdict


@pytest.mark.parametrize(
    ("timestamp", "signature", "verdict"),
    [
        (None, EXPECTED, Verdict.MISSING),
        (TS, None, Verdict.MISSING),
        ("", EXPECTED, Verdict.MISSING),
        ("1_700_000_000", EXPECTED, Verdict.MALFORMED),
        ("-1700000000", EXPECTED, Verdict.MALFORMED),
        ("1700000000.0", EXPECTED, Verdict.MALFORMED),
        ("\u0661" * 10, EXPECTED, Verdict.MALFORMED),
        ("9" * 40, EXPECTED, Verdict.MALFORMED),
        (TS, "é" * 64, Verdict.MALFORMED),
    ],
)
def test_malformed_headers(timestamp: str | None, signature: str | None, verdict: Verdict) -> None:
    assert verifier().check(timestamp, signature, BODY) is verdict


def test_no_key_and_several_keys() -> None:
    assert verifier(keys=()).check(TS, EXPECTED, BODY) is Verdict.NO_KEY
    other = signature_key(4)
    assert verifier(keys=(other, KEY)).verify(TS, EXPECTED, BODY)
    assert not verifier(keys=(other,)).verify(TS, EXPECTED, BODY)


def test_keys_are_checked_up_front_and_never_shown() -> None:
    with pytest.raises(ValueError):
        SignatureVerifier(["not hex"])
    assert KEY not in repr(verifier()) and "keys=1" in repr(verifier())


@given(key=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512))
def test_what_is_signed_verifies(key: bytes, body: bytes) -> None:
    assert verifier(keys=(key.hex(),)).verify(TS, compute_signature(key.hex(), TS, body), body)


class Capture:
    """An ASGI endpoint that records each request's headers and raw body, answering 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_the_simulators_deliveries_verify() -> None:
    clock = FakeClock()
    sim = Simulator(seed=3, leads=2, clock=clock)
    capture = Capture()
    sim.webhooks.mount("http://hooks.test", capture)
    async with sim.client() as client:
        hook = await subscribe_lead_created(client, "http://hooks.test/close")
        await client.post("/lead/", json={"name": "Signed Ltd"})
        await client.post("/lead/", json={"name": "Ünïcode GmbH ✓"})
    await sim.webhooks.drain()
    check = SignatureVerifier([hook["signature_key"]], clock=clock)
    assert len(capture.requests) == 2
    for headers, body in capture.requests:
        timestamp, signature = headers["close-sig-timestamp"], headers["close-sig-hash"]
        assert check.check(timestamp, signature, body) is Verdict.VALID
        assert check.check(timestamp, signature, body + b" ") is Verdict.MISMATCH
    clock.advance(301)
    headers, body = capture.requests[0]
    assert check.check(headers["close-sig-timestamp"], headers["close-sig-hash"], body) is (
        Verdict.STALE
    )
