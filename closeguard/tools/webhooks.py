"""Close webhook signatures: compute and verify ``close-sig-hash``, written from Close's docs.

Close signs each delivery with the subscription's ``signature_key`` (a hex string returned
once, when the subscription is created)::

    close-sig-timestamp: unix seconds, as text
    close-sig-hash:      hex(HMAC-SHA256(key=bytes.fromhex(signature_key),
                                         msg=timestamp + raw_body))

The key is the hex-*decoded* bytes (keying with the hex text fails every delivery), and the
message is the timestamp text followed by the raw body exactly as received, before any
JSON parsing. ``SignatureVerifier`` compares in constant time and refuses timestamps more
than ``tolerance`` seconds (5 minutes) from its clock's now, so a captured delivery cannot
be replayed later. This module is independent of the simulator's own signing code on
purpose: the simulator's deliveries are a check of this code, not its source.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable

from closeguard.tools.clock import Clock, SystemClock

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIG_HASH",
    "SIG_TIMESTAMP",
    "SignatureVerifier",
    "Verdict",
    "compute_signature",
]

SIG_HASH = "close-sig-hash"
SIG_TIMESTAMP = "close-sig-timestamp"
DEFAULT_TOLERANCE = 300.0
_MAX_TIMESTAMP_DIGITS = 12


class Verdict(enum.Enum):
    """Why a delivery was accepted or refused (all refusals answer 401)."""

    VALID = "valid"
    MISSING = "missing signature headers"
    MALFORMED = "malformed signature headers"
    STALE = "timestamp too far from now"
    MISMATCH = "signature does not match"
    NO_KEY = "no signature key configured"

    @property
    def ok(self) -> bool:
        return self is Verdict.VALID


def _digest(key: bytes, timestamp: bytes, body: bytes) -> bytes:
    return hmac.new(key, timestamp + body, hashlib.sha256).hexdigest().encode("ascii")


def compute_signature(signature_key: str, timestamp: str, body: bytes) -> str:
    """``close-sig-hash`` of ``body`` sent at ``timestamp`` (for tests and tools that sign)."""
    key = bytes.fromhex(signature_key)
    return _digest(key, timestamp.encode("ascii"), body).decode("ascii")


class SignatureVerifier:
    """Checks deliveries against one or more subscription keys (hex), on a ``Clock``.

    Several keys are accepted at once (a rotated key, several subscriptions to one URL).
    Keys are decoded once; a key that is not valid hex raises ``ValueError`` here, not at
    the first delivery. ``repr`` never shows a key.
    """

    def __init__(
        self,
        signature_keys: Iterable[str] = (),
        *,
        clock: Clock | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.tolerance = tolerance
        self._keys: tuple[bytes, ...] = ()
        self.set_keys(signature_keys)

    def set_keys(self, signature_keys: Iterable[str]) -> None:
        """Replace the accepted keys (hex strings)."""
        self._keys = tuple(bytes.fromhex(k) for k in signature_keys)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"SignatureVerifier(keys={len(self._keys)}, tolerance={self.tolerance})"

    def check(self, timestamp: str | None, signature: str | None, body: bytes) -> Verdict:
        """The verdict on a delivery: its two header values and its raw body."""
        if not timestamp or not signature:
            return Verdict.MISSING
        stamp = timestamp.strip()
        sig = signature.strip().lower()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
            return Verdict.MALFORMED
        if not sig.isascii():
            return Verdict.MALFORMED
        if abs(self.clock.now() - int(stamp)) > self.tolerance:
            return Verdict.STALE
        if not self._keys:
            return Verdict.NO_KEY
        given = sig.encode("ascii")
        stamp_bytes = stamp.encode("ascii")
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(_digest(key, stamp_bytes, body), given)
        return Verdict.VALID if matched else Verdict.MISMATCH

    def verify(self, timestamp: str | None, signature: str | None, body: bytes) -> bool:
        """Whether the delivery is signed by one of the keys and fresh."""
        return self.check(timestamp, signature, body).ok
