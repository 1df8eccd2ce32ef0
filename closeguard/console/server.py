"""Serving the console with uvicorn inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from closeguard.tools.errors import ConfigError

__all__ = ["serve"]


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10
) -> AsyncIterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"the console cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(int(startup_timeout * 100)):  # uvicorn offers a flag, not an event
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.cancel()
        sock.close()
        raise ConfigError(f"the console did not start on {host}:{bound}")
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    try:
        yield f"http://{shown}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        sock.close()
