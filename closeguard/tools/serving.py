"""Running an ASGI app on uvicorn inside the caller's event loop, on a socket already bound.

Shared by the webhook receiver, the console and the MCP endpoint, which bind their sockets
their own way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import uvicorn

__all__ = ["is_loopback", "serve_on_socket"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only reaches this machine: the console and the
    MCP endpoint refuse other addresses unless every request can be authenticated."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.asynccontextmanager
async def serve_on_socket(
    app: Callable[..., Awaitable[None]],
    sock: socket.socket,
    *,
    lifespan: Literal["on", "off"],
    not_started: Exception,
    startup_timeout: float = 10,
) -> AsyncIterator[None]:
    """Serve the ASGI ``app`` on ``sock`` until the block ends, then close ``sock``.

    Raises ``not_started`` (after closing ``sock``) if uvicorn has not started within
    ``startup_timeout`` seconds.
    """
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(int(startup_timeout * 100)):  # uvicorn offers a flag, not an event
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.cancel()
        sock.close()
        raise not_started
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()
