"""Redaction masks secrets and shortens long text; the fast path changes nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from closeguard.guardrails.redact import MAX_TEXT, REDACTED, canonical_json, redact, redacted_json

KEYS = st.sampled_from(["name", "note", "api_key", "Token", "lead_id", "password", "x", "body"])
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=300)
    | st.sampled_from(["key", "secret-sauce", "a" * 250]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=JSON)
def test_fast_path_equals_full_redaction(value: Any) -> None:
    assert redacted_json(value) == canonical_json(redact(value))


def test_secrets_masked_and_long_text_cut() -> None:
    doc = {"body": {"api_key": "sk_live_123", "note": "n" * (MAX_TEXT + 50)}, "params": {}}
    text = redacted_json(doc)
    assert "sk_live_123" not in text and REDACTED in text
    assert "[+50 chars]" in text
    assert redacted_json({"params": {"_limit": "5"}}) == '{"params":{"_limit":"5"}}'


def test_guard_decodes_bodies_orjson_refuses() -> None:
    from closeguard.guardrails.transport import _decode_body

    assert _decode_body(b'{"a": 1}') == {"a": 1}
    assert _decode_body(b'{"n": 123456789012345678901234567890}') == {
        "n": 123456789012345678901234567890
    }
    assert _decode_body(b"\xff not json") == {"_unparsed_bytes": 10}
    assert _decode_body(b"") == {}
    big = 18446744073709551616  # 2**64, 20 digits: orjson alone would make it a float
    assert _decode_body(b'{"id": "a1b2c3d4e5f6g7h8i9j0k1", "n": %d}' % big)["n"] == big
    many = b'{"a": 123456789, "b": 123456789, "c": 12}'  # 20 digits, none past 64 bits
    assert _decode_body(many) == {"a": 123456789, "b": 123456789, "c": 12}
