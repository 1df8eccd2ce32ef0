"""Login, sessions and CSRF for the console.

People log in with their personal token (``closeguard users add``) or by single sign-on;
the shared operator token (``CLOSEGUARD_CONSOLE_TOKEN``, or one generated at start) logs in
with the role ``admin``. A login makes a session in the store, named by a random id in an
``HttpOnly``, ``SameSite=Strict`` cookie; every form carries the session's CSRF token, and
the login form a double-submit token of its own (there is no session yet to bind it to).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from closeguard.store import Store
from closeguard.store.sessions import SessionRows
from closeguard.tools.errors import ConfigError
from closeguard.tools.serving import is_loopback

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
    """A logged-in person: their name (the approver's name), roles, how they logged in
    (``token``: a personal token, ``oidc``: single sign-on, ``console-token``: the shared
    operator token), the session's CSRF token and the messages for the next page."""

    id: str = field(repr=False)
    name: str
    expires: float
    roles: tuple[str, ...] = ()
    via: str = "console-token"
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    flash: str | None = None
    error: str | None = None
    loaded: tuple[str | None, str | None] = (None, None)

    def flash_take(self) -> tuple[str | None, str | None]:
        """The message for the next page shown, once."""
        out = (self.flash, self.error)
        self.flash = self.error = None
        return out

    @property
    def changed(self) -> bool:
        """Whether its messages changed since it was read (``Sessions.save`` writes them)."""
        return (self.flash, self.error) != self.loaded


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Server-side sessions in the store: several console processes behind one proxy share
    them, and a restart logs nobody out. Only a hash of the cookie value is stored."""

    def __init__(
        self, store: Store, *, ttl: float = SESSION_TTL, clock: Callable[[], float] = time.time
    ):
        self.ttl = ttl
        self.clock = clock
        self._rows = SessionRows(store)

    def open(self, name: str, roles: Iterable[str] = (), via: str = "console-token") -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), name, now + self.ttl, tuple(roles), via)
        self._rows.open(
            {
                "id_hash": _digest(session.id),
                "name": name,
                "roles": json.dumps(list(session.roles)),
                "via": via,
                "csrf": session.csrf,
                "expires": session.expires,
            },
            now,
        )
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        row = self._rows.get(_digest(session_id), self.clock())
        if row is None:
            return None
        loaded = (row["flash"], row["error"])
        return Session(
            session_id,
            row["name"],
            row["expires"],
            tuple(json.loads(row["roles"])),
            row["via"],
            row["csrf"],
            *loaded,
            loaded=loaded,
        )

    def save(self, session: Session) -> None:
        """Write the session's messages (for the next page)."""
        self._rows.set(_digest(session.id), flash=session.flash, error=session.error)
        session.loaded = (session.flash, session.error)

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._rows.close(_digest(session_id))
