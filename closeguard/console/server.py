"""Serving the console with uvicorn inside the caller's event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

from starlette.types import ASGIApp

from closeguard.tools.errors import ConfigError
from closeguard.tools.serving import serve_on_socket

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
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    failure = ConfigError(f"the console did not start on {host}:{bound}")
    async with serve_on_socket(
        app, sock, lifespan="off", not_started=failure, startup_timeout=startup_timeout
    ):
        yield f"http://{shown}:{bound}"
