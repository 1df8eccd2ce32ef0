"""``closeguard info``: where the store is, which Close and key, which model; no secrets."""

from __future__ import annotations

from typing import Any

import typer

from closeguard import __version__
from closeguard.cli._common import JsonOpt, print_json
from closeguard.store import display_url, store_problem
from closeguard.tools.settings import Settings


def masked(secret: str) -> str:
    """The last 4 characters of a long secret, nothing of a short one."""
    return f"…{secret[-4:]}" if len(secret) >= 12 else "****"


def _store(url: str) -> dict[str, Any]:
    problem = store_problem(url)
    return {"url": display_url(url), "exists": problem is None, "state": problem or "exists"}


def _credential(settings: Settings) -> dict[str, Any]:
    if settings.close_api_key is not None:
        key = settings.close_api_key.get_secret_value()
        return {"kind": "api_key", "shown": f"API key {masked(key)} (CLOSE_API_KEY)"}
    if settings.close_oauth_access_token is not None:
        token = settings.close_oauth_access_token.get_secret_value()
        return {"kind": "oauth", "shown": f"OAuth token {masked(token)} (CLOSE_OAUTH_ACCESS_TOKEN)"}
    return {"kind": "simulator", "shown": "none: commands that support it use the simulator"}


def info_data(settings: Settings) -> dict[str, Any]:
    """What ``info`` reports, as plain data (the ``--json`` shape)."""
    credential = _credential(settings)
    return {
        "version": __version__,
        "store": _store(settings.store_url),
        "close_base_url": settings.close_base_url,
        "simulator": credential["kind"] == "simulator",
        "credential": credential,
        "model": settings.model,
    }


def info(as_json: JsonOpt = False) -> None:
    """Show the configuration in use: store, Close base URL, credential (masked), model."""
    data = info_data(Settings())
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
