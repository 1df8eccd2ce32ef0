"""``closeguard mcp serve``: Close's tools for any MCP client, through the guard.

Wires the gateway (``closeguard.mcp``) to Close when a key is set, else to an embedded
simulated organization (kept beside the store between runs, as ``chat`` does), and serves
it over stdio (the default: what Claude Desktop and Cursor start) or streamable HTTP.
Everything this command says goes to stderr: on stdio, stdout is the protocol channel.

Over HTTP every request needs ``Authorization: Bearer <token>``: a person's token or
``CLOSEGUARD_MCP_TOKEN``. A non-loopback ``--host`` with neither an enabled account nor that
variable is refused (exit 2); on loopback with neither, a token is made for this run and
printed, as the console does.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Coroutine
from enum import StrEnum
from typing import Annotated, Any

import typer

from closeguard.agent import data_dir
from closeguard.cli._app import COMMANDS
from closeguard.cli._common import LogFormatOpt, fail, start_serving
from closeguard.cli._notify import notified, notify_urls
from closeguard.cli.sim import bind
from closeguard.guardrails import Accounts, Guarded, Policy
from closeguard.mcp import (
    HTTP_PATH,
    TOKEN_ENV,
    ClientFactory,
    Gateway,
    TokenAuth,
    check_listen,
    serve_http,
    serve_stdio,
)
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL as SIM_BASE_URL
from closeguard.store import default_store
from closeguard.tools import CloseClient, Settings
from closeguard.tools.errors import ConfigError

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["mcp"].help, no_args_is_help=True)

WORLD_FILE = "mcp-world.json"


class Transport(StrEnum):
    stdio = "stdio"
    http = "http"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _say(text: str) -> None:
    typer.echo(text, err=True)


def _wire(guarded: Guarded, settings: Settings) -> tuple[ClientFactory, str, Simulator | None]:
    """A client factory for Close with a key, else for an embedded simulator (and it)."""
    if settings.close_api_key is not None or settings.close_oauth_access_token is not None:

        def for_close(actor: str) -> CloseClient:
            return CloseClient(settings=settings, policy=guarded, actor=actor)

        return for_close, f"Close at {settings.close_base_url}", None
    world = data_dir(settings.store_url) / WORLD_FILE
    sim = Simulator.load(world) if world.exists() else Simulator(seed=7, leads=25)

    def for_sim(actor: str) -> CloseClient:
        return sim.client(policy=guarded, actor=actor)

    return for_sim, f"the embedded simulator (no CLOSE_API_KEY set; world kept in {world})", sim


def _verifier(host: str) -> TokenAuth:
    """The Bearer-token check for HTTP; refuses an address it would leave open (exit 2)."""
    store = default_store()
    shared = os.environ.get(TOKEN_ENV, "").strip() or None
    people = any(not a.disabled for a in Accounts(store).list())
    try:
        check_listen(host, shared=shared is not None, people=people)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    if shared is None and not people:
        shared = secrets.token_urlsafe(24)
        _say(
            f"no {TOKEN_ENV} and no account: requests need "
            f"'Authorization: Bearer {shared}' (made for this run)"
        )
    return TokenAuth(store, shared)


@app.command("serve")
def serve(
    policy: Annotated[
        str, typer.Option("--policy", "-p", metavar="NAME|FILE", help="The policy to enforce.")
    ],
    transport: Annotated[
        Transport, typer.Option("--transport", help="stdio (default) or http (streamable HTTP).")
    ] = Transport.stdio,
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface for --transport http.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port", min=0, max=65535, metavar="PORT", help="Port for http (0: any free port)."
        ),
    ] = 8766,
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            metavar="NAME",
            help="Audit calls as NAME (default: the MCP client's name from its initialize); "
            "over HTTP, a person's token audits as that person instead.",
        ),
    ] = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve the tools POLICY can ever allow; every call is checked, approved and audited.

    Over HTTP every request needs Authorization: Bearer TOKEN, a person's token (closeguard
    users add) or CLOSEGUARD_MCP_TOKEN; a non-loopback --host needs one of them to exist."""
    start_serving(log_format)
    verifier = _verifier(host) if transport is Transport.http else None
    loaded = Policy.load(policy)
    settings = Settings()
    notify_urls(settings)
    guarded = Guarded(loaded, store=default_store())
    client_for, description, sim = _wire(guarded, settings)
    gateway = Gateway(guarded, client_for, actor=actor, description=description)
    _say(
        f"closeguard mcp: policy {loaded.name!r}, {len(gateway.tools)} tools, Close: {description}"
    )
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: the world is saved
    key = settings.close_api_key.get_secret_value() if settings.close_api_key else None

    def told(work: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
        """``work`` with the approvals it asks for told to people (``closeguard run``'s way)."""
        return notified(
            work,
            gateway.store,
            api_key=sim.api_key if sim else key,
            base_url=SIM_BASE_URL if sim else settings.close_base_url,
            transport=sim.transport() if sim else None,
            say=_say,
            remind=True,
        )

    try:
        if transport is Transport.stdio:
            _say("serving MCP on stdio")
            asyncio.run(told(serve_stdio(gateway)))
        else:
            assert verifier is not None
            sock = bind(host, port)
            _say(
                f"serving MCP (streamable HTTP) at http://{host}:{sock.getsockname()[1]}{HTTP_PATH}"
            )
            try:
                asyncio.run(told(serve_http(gateway, verifier, sock, host=host)))
            finally:
                sock.close()
    except KeyboardInterrupt:
        pass
    finally:
        if sim is not None:
            sim.save(data_dir(settings.store_url) / WORLD_FILE)
