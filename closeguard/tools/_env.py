"""What the store needs of the settings, read without pydantic: its URL and the defaults.

``settings`` re-exports these; ``_settings`` (the pydantic-settings model) uses them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CLOSE_BASE_URL = "https://api.close.com/api/v1"
STORE_URL_NAMES = ("CLOSEGUARD_STORE_URL", "store_url")
"""The names ``Settings.store_url`` is read from, first found wins (any case)."""
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


def store_url() -> str:
    """``Settings().store_url``: the environment, then ``.env``, then the default, with
    names matched in any case, as pydantic-settings reads them."""
    found = _first(os.environ, STORE_URL_NAMES)
    if found is None and Path(ENV_FILE).is_file():
        from dotenv import dotenv_values

        found = _first(dotenv_values(ENV_FILE), STORE_URL_NAMES)
    return default_store_url() if found is None else found
