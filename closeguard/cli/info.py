"""``closeguard info``: where the store is, which Close and key, which model; no secrets."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import typer

from closeguard import __version__
from closeguard.cli._common import JsonOpt, print_json
from closeguard.tools.settings import (
    API_KEY_NAMES,
    BASE_URL_NAMES,
    CLOSE_BASE_URL,
    MODEL_NAMES,
    OAUTH_ACCESS_TOKEN_NAMES,
    read,
    store_url,
)


def masked(secret: str) -> str:
    """The last 4 characters of a long secret, nothing of a short one."""
    return f"…{secret[-4:]}" if len(secret) >= 12 else "****"


_AUDIT_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"


def _sqlite_state(path: Path) -> str | None:
    """A SQLite file's state read with the standard library alone: missing, or a store
    (it holds the ``audit`` table, as every closeguard store does); None when only the
    store's own check can tell (any other file)."""
    if not path.is_file():
        return "the file does not exist"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            found = conn.execute(_AUDIT_TABLE).fetchone()
    except sqlite3.Error:
        return None
    return "exists" if found else None


def _store(url: str) -> dict[str, Any]:
    """Where the store is and whether it exists. A plain SQLite file URL (the default) is
    looked at without SQLAlchemy, whose import is most of this command's time; any other
    URL, or a file that is not plainly a store, goes through ``store_problem``."""
    from closeguard.store.reader import sqlite_path

    path = sqlite_path(url)
    state = None if path is None else _sqlite_state(path)
    if state is not None:
        return {"url": url, "exists": state == "exists", "state": state}
    from closeguard.store import display_url, store_problem

    problem = store_problem(url)
    return {"url": display_url(url), "exists": problem is None, "state": problem or "exists"}


def _credential() -> dict[str, Any]:
    key = read(API_KEY_NAMES)
    if key is not None:
        return {"kind": "api_key", "shown": f"API key {masked(key)} (CLOSE_API_KEY)"}
    token = read(OAUTH_ACCESS_TOKEN_NAMES)
    if token is not None:
        return {"kind": "oauth", "shown": f"OAuth token {masked(token)} (CLOSE_OAUTH_ACCESS_TOKEN)"}
    return {"kind": "simulator", "shown": "none: commands that support it use the simulator"}


def info_data() -> dict[str, Any]:
    """What ``info`` reports, as plain data (the ``--json`` shape). Settings are read as
    ``Settings`` reads them, without pydantic-settings (``tools.settings.read``)."""
    credential = _credential()
    base_url = read(BASE_URL_NAMES)
    return {
        "version": __version__,
        "store": _store(store_url()),
        "close_base_url": CLOSE_BASE_URL if base_url is None else base_url,
        "simulator": credential["kind"] == "simulator",
        "credential": credential,
        "model": read(MODEL_NAMES),
    }


def info(as_json: JsonOpt = False) -> None:
    """Show the configuration in use: store, Close base URL, credential (masked), model."""
    data = info_data()
    if as_json:
        print_json(data)
        return
    store = data["store"]
    rows = [
        ("closeguard", data["version"]),
        ("store", f"{store['url']} ({store['state']})"),
        ("close", "the embedded simulator" if data["simulator"] else data["close_base_url"]),
        ("credential", data["credential"]["shown"]),
        ("model", data["model"] or "none (set CLOSEGUARD_MODEL, e.g. openai:gpt-4o-mini)"),
    ]
    for label, value in rows:
        typer.echo(f"{label:<11} {value}")
