"""Serving a ``Gateway`` over stdio or streamable HTTP with the MCP SDK's transports.

On stdio, stdout is the protocol channel: the SDK's ``stdio_server`` moves the process's
own fd 1 onto stderr while it serves, so a stray print cannot corrupt the stream. Over HTTP
the SDK's streamable HTTP app (sessions, SSE for mid-call elicitation, DNS-rebinding
protection on loopback) is served by uvicorn on an already bound socket, behind the SDK's
bearer-token middleware: every HTTP request needs a token ``TokenAuth`` accepts.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from mcp.server.stdio import stdio_server
from starlette.applications import Starlette

from closeguard.mcp.auth import TokenAuth, auth_settings
from closeguard.mcp.gateway import Gateway

__all__ = ["HTTP_PATH", "http_app", "serve_http", "serve_stdio"]

HTTP_PATH = "/mcp"


async def serve_stdio(gateway: Gateway) -> None:
    """Serve one MCP client on this process's stdin and stdout until it hangs up."""
    server = gateway.server()
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await gateway.aclose()


def _url(host: str, port: int | None = None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}" + (f":{port}" if port else "")


def http_app(
    gateway: Gateway, verifier: TokenAuth, *, host: str = "127.0.0.1", url: str | None = None
) -> Starlette:
    """The streamable HTTP ASGI app (endpoint ``/mcp``), every request authenticated by
    ``verifier`` (401 with ``WWW-Authenticate: Bearer`` otherwise); ``url``: where it is
    served. Run it with its lifespan on."""
    return gateway.server().streamable_http_app(
        streamable_http_path=HTTP_PATH,
        host=host,
        auth=auth_settings(url or _url(host)),
        token_verifier=verifier,
    )


async def serve_http(
    gateway: Gateway, verifier: TokenAuth, sock: socket.socket, *, host: str, **config: Any
) -> None:
    """Serve the streamable HTTP app on ``sock`` until the server is told to stop."""
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            http_app(gateway, verifier, host=host, url=_url(host, port)),
            log_level="warning",
            access_log=False,
            lifespan="on",
            **config,
        )
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        await gateway.aclose()
