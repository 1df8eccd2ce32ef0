"""``/healthz``, ``/readyz`` and ``/metrics`` for load balancers, Kubernetes and Prometheus.

``Probes`` is a small ASGI app answering those three paths, mounted by the webhook receiver
(raw ASGI: ``await probes.handle(scope, send)``) and by the console (a Starlette ``Route``
per path). None of them asks for a login, and none says anything but part names, states
and counts: no ids, no personal data.

- ``/healthz``: 200 ``{"status": "ok"}`` while the process can answer at all;
- ``/readyz``: each check (a coroutine returning ``{part: None | why not}``) runs with a
  time bound; 200 ``{"status": "ready", "checks": {part: "ok"}}`` when every part is fine,
  else 503 with ``"status": "not ready"``, the failing parts under ``not_ready`` and why
  beside each in ``checks``;
- ``/metrics``: ``telemetry.metrics.exposition()`` in Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from closeguard.telemetry import metrics

__all__ = ["HEALTH_PATH", "METRICS_PATH", "PATHS", "READY_PATH", "Check", "Probes"]

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
PATHS = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})

Check = Callable[[], Awaitable[Mapping[str, str | None]]]
"""A readiness check: the parts it looks at, each None (fine) or a short reason."""

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class Probes:
    """The three endpoints over the readiness ``checks`` added with ``add``."""

    def __init__(self, *, timeout: float = 3.0) -> None:
        self.timeout = timeout
        self.checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Add (or replace) the check ``name``; its parts appear in ``/readyz``."""
        self.checks[name] = check

    def part(self, name: str, why_not: Callable[[], str | None]) -> None:
        """Add a check of one in-process part: ``why_not()`` is None when it is fine."""

        async def check() -> Mapping[str, str | None]:
            return {name: why_not()}

        self.add(name, check)

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """The ``/readyz`` status code and body."""
        names = list(self.checks)
        found = await asyncio.gather(*(self._run(n) for n in names))
        checks: dict[str, str] = {}
        for parts in found:
            for part, why_not in parts.items():
                checks[part] = "ok" if why_not is None else why_not
        failing = sorted(p for p, state in checks.items() if state != "ok")
        if failing:
            return 503, {"status": "not ready", "not_ready": failing, "checks": checks}
        return 200, {"status": "ready", "checks": checks}

    async def _run(self, name: str) -> Mapping[str, str | None]:
        try:
            return await asyncio.wait_for(self.checks[name](), self.timeout)
        except TimeoutError:
            return {name: f"no answer within {self.timeout:g} s"}
        except Exception as exc:
            return {name: f"check failed: {type(exc).__name__}"}

    async def handle(self, scope: Mapping[str, Any], send: Send) -> bool:
        """Answer ``scope`` if it is a GET/HEAD of one of ``PATHS``; False when it is not."""
        path = scope.get("path")
        if path not in PATHS or scope.get("method") not in ("GET", "HEAD"):
            return False
        if path == METRICS_PATH:
            await _send(send, 200, await metrics.exposition(), metrics.CONTENT_TYPE)
        elif path == READY_PATH:
            status, body = await self.readiness()
            await _send(send, status, json.dumps(body).encode(), "application/json")
        else:
            await _send(send, 200, b'{"status": "ok"}', "application/json")
        return True

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if not await self.handle(scope, send):
            await _send(send, 405, b'{"error": "use GET"}', "application/json")


async def _send(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
