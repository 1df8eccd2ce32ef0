"""Login, sessions and CSRF for the console.

One login token opens the console (``CLOSEGUARD_CONSOLE_TOKEN``, or one generated at start).
A login makes a server-side session, named by a random id in an ``HttpOnly``,
``SameSite=Strict`` cookie; every form carries the session's CSRF token, and the login form
a double-submit token of its own (there is no session yet to bind it to).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from closeguard.tools.errors import ConfigError

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Session",
    "Sessions",
    "check_listen",
    "is_loopback",
    "new_token",
    "same",
]

SESSION_COOKIE = "cg_session"
LOGIN_COOKIE = "cg_login"
SESSION_TTL = 12 * 3600.0


def new_token() -> str:
    """A login token to print at start when none is configured."""
    return secrets.token_urlsafe(24)


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted secret with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, token_configured: bool) -> None:
    """Refuse a non-loopback address unless the operator chose the token themselves."""
    if not is_loopback(host) and not token_configured:
        raise ConfigError(
            f"the console will not listen on {host} (reachable from other machines) without "
            "a login token of your choosing: set CLOSEGUARD_CONSOLE_TOKEN, or listen on "
            "127.0.0.1"
        )


@dataclass
class Session:
    """A logged-in person: their name (the approver's name) and the session's CSRF token."""

    id: str
    name: str
    expires: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    flash: str | None = None
    error: str | None = None

    def flash_take(self) -> tuple[str | None, str | None]:
        """The message for the next page shown, once."""
        out = (self.flash, self.error)
        self.flash = self.error = None
        return out


class Sessions:
    """Server-side sessions, in memory: a restart logs everyone out."""

    def __init__(self, *, ttl: float = SESSION_TTL, clock: Callable[[], float] = time.time):
        self.ttl = ttl
        self.clock = clock
        self._by_id: dict[str, Session] = {}

    def open(self, name: str) -> Session:
        now = self.clock()
        self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
        session = Session(secrets.token_urlsafe(32), name, now + self.ttl)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        found = self._by_id.get(session_id or "")
        if found is None or found.expires <= self.clock():
            return None
        return found

    def close(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)
