"""``closeguard console``: the web console alone, on the configured store.

``closeguard run`` serves the same console beside the runtime (``--console``); this command
is for a machine that only decides approvals and reads runs and the audit log, while the
runtime's workers (which notice decided approvals) run elsewhere on the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated

import typer

from closeguard.cli._common import LogFormatOpt, existing_store, fail, start_serving
from closeguard.cli.workflows import PathOpt, all_workflows
from closeguard.console import (
    ConsoleConfig,
    OIDCSettings,
    Reader,
    build_console,
    check_listen,
    new_token,
)
from closeguard.console import serve as serve_console
from closeguard.store import Store
from closeguard.telemetry import Probes
from closeguard.tools import Settings
from closeguard.tools.errors import ConfigError
from closeguard.workflows.definition import Workflow

__all__ = ["DEFAULT_CONSOLE", "TOKEN_ENV", "console", "open_console", "parse_console"]

DEFAULT_CONSOLE = "127.0.0.1:8788"
TOKEN_ENV = "CLOSEGUARD_CONSOLE_TOKEN"


def parse_console(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise fail(f"the console's address is HOST:PORT, not {value!r}", 2)
    return host, int(port)


def console_token() -> tuple[str, bool]:
    """The login token and whether the operator chose it (else one is generated)."""
    chosen = os.environ.get(TOKEN_ENV, "").strip()
    return (chosen, True) if chosen else (new_token(), False)


@contextlib.asynccontextmanager
async def open_console(
    store: Store,
    host: str,
    port: int,
    *,
    reader: Reader | None,
    workflows: Mapping[str, Workflow],
    say: Callable[[str], None] = typer.echo,
    probes: Probes | None = None,
) -> AsyncIterator[str]:
    """Serve the console until the block ends; prints where, and the token if generated.
    Single sign-on is on when ``CLOSEGUARD_OIDC_*`` are set (``ConfigError`` if only some)."""
    token, chosen = console_token()
    check_listen(host, chosen)
    oidc = OIDCSettings.from_env()
    config = ConsoleConfig(
        store=store, token=token, reader=reader, workflows=workflows, oidc=oidc, probes=probes
    )
    app = build_console(config)
    async with serve_console(app, host, port) as url:
        how = f"token from {TOKEN_ENV}" if chosen else f"login token {token}"
        if oidc is not None:
            how += f"; single sign-on with {oidc.issuer}"
        say(f"console: {url}/approvals ({how})")
        yield url


async def _forever(
    store: Store, host: str, port: int, reader: Reader | None, flows: Mapping[str, Workflow]
) -> None:
    async with open_console(store, host, port, reader=reader, workflows=flows):
        await asyncio.Event().wait()


def console(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help=f"Where the console listens (default {DEFAULT_CONSOLE}); a non-loopback "
            f"address needs {TOKEN_ENV}.",
        ),
    ] = DEFAULT_CONSOLE,
    path: PathOpt = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Serve the web console: approvals, workflow runs and the audit log (Ctrl-C stops).

    People log in with their own token (closeguard users add) or by single sign-on.

    Single sign-on: set CLOSEGUARD_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET.

    The console token logs an operator in, with the role admin.

    Scripts: /api/approvals with Authorization: Bearer <personal token>.
    """
    host, port = parse_console(listen)
    start_serving(log_format)
    check_listen(host, bool(os.environ.get(TOKEN_ENV, "").strip()))
    settings = Settings()
    store = existing_store()
    reader = None
    if settings.close_api_key is not None:
        reader = Reader(
            store,
            api_key=settings.close_api_key.get_secret_value(),
            base_url=settings.close_base_url,
        )
    try:
        asyncio.run(_forever(store, host, port, reader, all_workflows(path)))
    except KeyboardInterrupt:
        typer.echo("console stopped")
    except ConfigError as exc:
        raise fail(str(exc)) from None
