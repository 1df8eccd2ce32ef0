"""Settings read without pydantic: the store's URL, what ``closeguard info`` shows, defaults.

``settings`` re-exports these; ``_settings`` (the pydantic-settings model) reads its fields
by the same names. A command that only reads the store, or ``info``, starts without
pydantic-settings (issue 23).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CLOSE_BASE_URL = "https://api.close.com/api/v1"
STORE_URL_NAMES = ("CLOSEGUARD_STORE_URL", "store_url")
"""The names ``Settings.store_url`` is read from, first found wins (any case)."""
API_KEY_NAMES = ("CLOSE_API_KEY", "close_api_key")
BASE_URL_NAMES = ("CLOSE_BASE_URL", "close_base_url")
OAUTH_ACCESS_TOKEN_NAMES = ("CLOSE_OAUTH_ACCESS_TOKEN",)
MODEL_NAMES = ("CLOSEGUARD_MODEL", "model")
ENV_FILE = ".env"


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("closeguard", appauthor=False))


def default_store_url() -> str:
    return f"sqlite:///{default_data_dir() / 'closeguard.db'}"


def _first(values: Mapping[str, str | None], names: tuple[str, ...]) -> str | None:
    lowered = {key.lower(): value for key, value in values.items() if value is not None}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def read(names: tuple[str, ...]) -> str | None:
    """The setting read by ``names``: the environment, then ``.env``, names matched in any
    case, as pydantic-settings reads a field; ``None`` when it is not set."""
    found = _first(os.environ, names)
    if found is None and Path(ENV_FILE).is_file():
        from dotenv import dotenv_values

        found = _first(dotenv_values(ENV_FILE), names)
    return found


def store_url() -> str:
    """``Settings().store_url``: as ``read`` finds it, else the default."""
    found = read(STORE_URL_NAMES)
    return default_store_url() if found is None else found
