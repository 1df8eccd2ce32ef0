"""Settings read from the environment (and a ``.env`` file): one place, one prefix.

``CLOSE_API_KEY`` and ``CLOSE_BASE_URL`` keep Close's own names; everything else of
closeguard's is ``CLOSEGUARD_…``. Secrets are ``SecretStr`` so they never print.

``Settings`` (pydantic-settings) is built on first use; ``read(names)`` reads one setting
the same way without it (``store_url()`` the store's), so a command that only reads the
store, or ``info``, starts without pydantic-settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from closeguard.tools._env import (
    API_KEY_NAMES,
    BASE_URL_NAMES,
    CLOSE_BASE_URL,
    MODEL_NAMES,
    OAUTH_ACCESS_TOKEN_NAMES,
    STORE_URL_NAMES,
    default_data_dir,
    default_store_url,
    read,
    store_url,
)

if TYPE_CHECKING:
    from closeguard.tools._settings import Settings

__all__ = [
    "API_KEY_NAMES",
    "BASE_URL_NAMES",
    "CLOSE_BASE_URL",
    "MODEL_NAMES",
    "OAUTH_ACCESS_TOKEN_NAMES",
    "STORE_URL_NAMES",
    "Settings",
    "default_data_dir",
    "default_store_url",
    "read",
    "store_url",
]


def __getattr__(name: str) -> Any:
    if name != "Settings":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module("closeguard.tools._settings").Settings
    globals()[name] = value
    return value
