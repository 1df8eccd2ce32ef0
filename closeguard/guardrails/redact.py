"""Redaction of call arguments before they are written anywhere (audit rows, approvals).

Any mapping key containing ``key``, ``token``, ``secret``, ``password`` or
``authorization`` (case-insensitive) has its value replaced. Long strings (email and note
bodies) are cut to ``MAX_TEXT`` characters with the original length noted: an audit row
shows what was done, not a copy of the customer's mail. Credentials travel in headers,
which are never logged at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SENSITIVE = ("key", "token", "secret", "password", "authorization", "signature")
REDACTED = "[redacted]"
MAX_TEXT = 200

__all__ = ["MAX_TEXT", "REDACTED", "canonical_json", "redact"]


def _sensitive(key: str) -> bool:
    low = key.lower()
    return any(word in low for word in SENSITIVE)


def redact(value: Any, *, max_text: int = MAX_TEXT) -> Any:
    """A copy of ``value`` with sensitive keys masked and long strings shortened."""
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _sensitive(str(k)) else redact(v, max_text=max_text)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, max_text=max_text) for v in value]
    if isinstance(value, str) and len(value) > max_text:
        return f"{value[:max_text]}…[+{len(value) - max_text} chars]"
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the form that is hashed and compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
