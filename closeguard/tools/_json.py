"""Reading JSON bodies fast and exactly: orjson, except where it would be inexact.

orjson turns integers past 64 bits into floats, so a body with 19 digits in a row goes to
the standard library, as does one orjson refuses (``NaN``, which the standard library reads).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["loads", "may_hold_long_number"]

_DIGIT_RUNS = bytes(0x31 if 0x30 <= b <= 0x39 else 0x30 for b in range(256))
"""A ``bytes.translate`` table: each ASCII digit becomes ``1``, every other byte ``0``."""
_LONG_RUN = b"1" * 19


def may_hold_long_number(content: bytes) -> bool:
    """Whether ``content`` has 19 ASCII digits in a row (``re``'s ``\\d{19}`` on bytes).

    Two C passes, a translate and a substring search: about 1 ns a byte, where the
    regular expression took 15 (30 us for a 2 KB lead, 1 ms for a page of 100: on every
    response the client reads, since every real body has 19 digits in all).
    """
    return _LONG_RUN in content.translate(_DIGIT_RUNS)


def loads(content: bytes) -> Any:
    """``content`` decoded as the standard library's ``json.loads`` decodes it (raises
    ``ValueError`` the same way)."""
    if not may_hold_long_number(content):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)
