"""Serving a ``Gateway`` over stdio or streamable HTTP with the MCP SDK's transports.

On stdio, stdout is the protocol channel: the SDK's ``stdio_server`` moves the process's
own fd 1 onto stderr while it serves, so a stray print cannot corrupt the stream. Over HTTP
the SDK's streamable HTTP app (sessions, SSE for mid-call elicitation, DNS-rebinding
protection on loopback) is served by uvicorn on an already bound socket.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from mcp.server.stdio import stdio_server
from starlette.applications import Starlette

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


def http_app(gateway: Gateway, *, host: str = "127.0.0.1") -> Starlette:
    """The streamable HTTP ASGI app (endpoint ``/mcp``); run it with its lifespan on."""
    return gateway.server().streamable_http_app(streamable_http_path=HTTP_PATH, host=host)


async def serve_http(gateway: Gateway, sock: socket.socket, *, host: str, **config: Any) -> None:
    """Serve the streamable HTTP app on ``sock`` until the server is told to stop."""
    server = uvicorn.Server(
        uvicorn.Config(
            http_app(gateway, host=host),
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
