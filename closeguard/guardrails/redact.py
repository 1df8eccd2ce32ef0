"""Redaction of call arguments before they are written anywhere (audit rows, approvals).

Any mapping key containing ``key``, ``token``, ``secret``, ``password`` or
``authorization`` (case-insensitive) has its value replaced. Long strings (email and note
bodies) are cut to ``MAX_TEXT`` characters with the original length noted: an audit row
shows what was done, not a copy of the customer's mail. Credentials travel in headers,
which are never logged at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import orjson

SENSITIVE = ("key", "token", "secret", "password", "authorization", "signature")
REDACTED = "[redacted]"
MAX_TEXT = 200

__all__ = ["MAX_TEXT", "REDACTED", "canonical_json", "redact", "redacted_json"]


_SENSITIVE_CACHE: dict[str, bool] = {}


def _sensitive(key: str) -> bool:
    found = _SENSITIVE_CACHE.get(key)
    if found is None:
        low = key.lower()
        found = any(word in low for word in SENSITIVE)
        if len(_SENSITIVE_CACHE) < 10_000:
            _SENSITIVE_CACHE[key] = found
    return found


def redact(value: Any, *, max_text: int = MAX_TEXT) -> Any:
    """A copy of ``value`` with sensitive keys masked and long strings shortened."""
    kind = type(value)
    if kind is str:
        return (
            value
            if len(value) <= max_text
            else (f"{value[:max_text]}…[+{len(value) - max_text} chars]")
        )
    if kind in (int, float, bool) or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {
            str(k): REDACTED if _sensitive(str(k)) else redact(v, max_text=max_text)
            for k, v in value.items()
        }
    if kind in (list, tuple):
        return [redact(v, max_text=max_text) for v in value]
    if isinstance(value, str):
        return redact(str(value), max_text=max_text)
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the form that is hashed and compared.

    orjson when it can (it is several times faster on the audit hot path), the standard
    library for what orjson refuses (non-string keys, integers beyond 64 bits).
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    except TypeError:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )


_SENSITIVE_BYTES = re.compile("|".join(SENSITIVE).encode())


def redacted_json(value: Any, *, max_text: int = MAX_TEXT) -> str:
    """``canonical_json(redact(value))``, without the walk when nothing can need redacting.

    The audit hot path: a short document with no sensitive word anywhere in it has no
    long string and no sensitive key, so its canonical JSON is already the answer.
    """
    try:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return canonical_json(redact(value, max_text=max_text))
    if len(raw) <= max_text and _SENSITIVE_BYTES.search(raw.lower()) is None:
        return raw.decode()
    return canonical_json(redact(value, max_text=max_text))
