"""``tools._json``: the check that sends a body to the exact decoder finds exactly the bodies
with 19 digits in a row, as the regular expression it replaced did."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from closeguard.tools._json import loads, may_hold_long_number

_REFERENCE = re.compile(rb"\d{19}")
_BYTES = st.lists(st.one_of(st.sampled_from(b"0123456789"), st.integers(0, 255)), max_size=200).map(
    bytes
)


@given(_BYTES)
def test_long_digit_runs_found_as_the_regex_finds_them(content: bytes) -> None:
    assert may_hold_long_number(content) == (_REFERENCE.search(content) is not None)


def test_edges() -> None:
    assert not may_hold_long_number(b"")
    assert not may_hold_long_number(b"1" * 18)
    assert may_hold_long_number(b"x" + b"9" * 19 + b"x")
    assert not may_hold_long_number(b"123456789-123456789-123456789")
    # Non-ASCII digits are not digits here (``\d`` on bytes is ASCII only).
    assert not may_hold_long_number("\u0661".encode() * 19)


def test_loads_keeps_integers_past_64_bits() -> None:
    big = 2**70
    text = b'{"date": "2026-12-06T20:00:00.000000+00:00", "n": %d, "m": 12}' % big
    assert loads(text) == {"date": "2026-12-06T20:00:00.000000+00:00", "n": big, "m": 12}
    assert loads(b'{"a": 123456789, "b": 1234567890}') == json.loads(
        b'{"a": 123456789, "b": 1234567890}'
    )
