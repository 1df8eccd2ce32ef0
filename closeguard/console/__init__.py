"""The web console: approvals, workflow runs and the audit log, for people with accounts
(personal tokens or single sign-on), and the approvals JSON API (``/api/approvals``).

Served by ``closeguard run`` beside the runtime and alone by ``closeguard console``; a
Starlette app with server-rendered pages and its own small script and stylesheet (no CDN).
"""

from __future__ import annotations

from closeguard.console.api import ApprovalsAPI
from closeguard.console.app import ConsoleConfig, build_console
from closeguard.console.oidc import OIDC, OIDCError, OIDCSettings
from closeguard.console.records import CONSOLE_ACTOR, Reader
from closeguard.console.security import check_listen, new_token
from closeguard.console.server import serve

__all__ = [
    "CONSOLE_ACTOR",
    "OIDC",
    "ApprovalsAPI",
    "ConsoleConfig",
    "OIDCError",
    "OIDCSettings",
    "Reader",
    "build_console",
    "check_listen",
    "new_token",
    "serve",
]
