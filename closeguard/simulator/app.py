"""The simulator's ASGI app: one small routing core driven by the endpoint catalog.

Every request under ``/api/v1`` goes through the same steps: authenticate (Basic with the
key as username, or Bearer), resolve the endpoint with ``find_endpoint`` (404 for an
unknown path, 405 with ``Allow`` for a known path and wrong method), decode the body
(415 unless JSON, 400 if malformed), run the endpoint's handler, then commit the events it
staged and hand each to the ``on_event`` listeners. Any error is Close's JSON shape; a
handler bug is a 500 in that shape too, never a traceback. Because handlers validate before
they mutate, a refused request changes nothing.

``build_app(backend, middleware=[...])`` wraps the core in ASGI middlewares (first in the
list is outermost), e.g. ``lambda app: RateLimitMiddleware(app, limiter)``; the request
counter sits outside them all, so ``request_count`` sees every request received.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from closeguard.simulator._context import ApiError, Ctx
from closeguard.simulator.clock import Clock, SystemClock
from closeguard.simulator.events import EventListener, EventLog
from closeguard.simulator.handlers import HANDLERS
from closeguard.simulator.state import ApiKey, OrgState, from_epoch
from closeguard.tools.catalog import API_PREFIX, Endpoint, find_endpoint
from closeguard.tools.errors import UnknownEndpoint

__all__ = ["ASGIApp", "Backend", "Middleware", "build_app"]

logger = logging.getLogger(__name__)

ASGIApp = Callable[..., Any]
Middleware = Callable[[ASGIApp], ASGIApp]
Scope = dict[str, Any]

MAX_BODY = 5 * 1024 * 1024
UNKNOWN = "unknown"


@dataclass
class Backend:
    """What the app serves: the state, the Event Log, the clock, listeners and counters."""

    state: OrgState
    log: EventLog
    clock: Clock = field(default_factory=SystemClock)
    listeners: list[EventListener] = field(default_factory=list)
    request_count: Counter[str] = field(default_factory=Counter)

    def authenticate(self, header: str | None) -> ApiKey | None:
        """The key a ``Authorization`` header carries, if the organization knows it."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        credential: str | None = None
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            credential = decoded.partition(":")[0]
        elif scheme == "bearer":
            credential = value.strip()
        return self.state.api_keys.get(credential) if credential else None

    def dispatch(
        self,
        endpoint: Endpoint,
        key: ApiKey,
        *,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        body: Any,
        path: str,
    ) -> tuple[int, Any]:
        """Run ``endpoint``'s handler as ``key``, then commit the events it staged and hand
        each to the listeners; ``ApiError`` (nothing changed) when it refuses.

        Requests come here once decoded; ``Simulator.call`` comes straight here, without
        HTTP or middleware, to seed large worlds quickly.
        """
        state = self.state
        counter_before = state.ids.counter
        ctx = Ctx(
            state=state,
            log=self.log,
            endpoint=endpoint,
            path_params=path_params,
            query=query,
            body=body,
            user_id=key.user_id,
            api_key_id=key.id,
            request_id=state.ids.new("req"),
            method=endpoint.method,
            path=path,
            now=from_epoch(self.clock.now()),
        )
        try:
            status, payload = HANDLERS[endpoint.name](ctx)
        except ApiError:
            state.ids.counter = counter_before
            raise
        finally:
            if endpoint.access != "read":
                state.wrote()
        for event in ctx.pending:
            self.log.append(event)
        if ctx.pending:
            self.log.prune(ctx.now)
        for event in ctx.pending:
            for listener in list(self.listeners):
                try:
                    listener(event)
                except Exception:  # a listener must not fail the request
                    logger.exception("event listener failed")
        return status, payload

    def organization_of(self, scope: Scope, _key_id: str = "") -> str | None:
        """The organization whose key a request carries, ``None`` for a bad or missing one.

        The rate limiter's ``org_of``: it charges a valid key to this organization's budget
        and anything else to the unauthenticated budget, so bad keys cannot spend it.
        """
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                known = self.authenticate(value.decode("latin-1"))
                return self.state.organization_id if known is not None else None
        return None


def _json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, raw, body


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "Request body too large.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


class _Core:
    """The innermost ASGI app: auth, routing, body decoding, dispatch, event commit."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, payload, extra = await self._handle(scope, receive)
        except ApiError as err:
            status, payload, extra = err.status, err.body(), err.headers
        except Exception:  # a handler bug must still answer in Close's shape
            logger.exception("simulator handler failed")
            status, payload, extra = 500, ApiError(500, "Internal server error").body(), {}
        code, headers, body = _json_response(status, payload, extra)
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Any) -> tuple[int, Any, dict[str, str]]:
        path: str = scope["path"]
        method: str = scope["method"].upper()
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            raise ApiError(404, "Not found")
        headers = _headers(scope)
        key = self.backend.authenticate(headers.get("authorization"))
        if key is None:
            raise ApiError(401, "Unauthorized: provide a valid API key or OAuth token.")
        try:
            endpoint, path_params = find_endpoint(method, path)
        except UnknownEndpoint as exc:
            allowed = getattr(exc, "allowed", None) or ()
            if allowed:
                raise ApiError(
                    405, f"Method {method} not allowed", headers={"Allow": ", ".join(allowed)}
                ) from None
            raise ApiError(404, "Not found") from None
        body: Any = None
        if method in ("POST", "PUT"):
            raw = await _read_body(receive)
            if raw.strip():
                if not _is_json(headers.get("content-type", "")):
                    raise ApiError(415, "Unsupported media type: send application/json.")
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise ApiError(400, "The request body is not valid JSON.") from None
            else:
                body = {}
        query: dict[str, str] = {}
        raw_query = scope.get("query_string", b"").decode("latin-1")
        if raw_query:
            from urllib.parse import parse_qsl

            query = dict(parse_qsl(raw_query, keep_blank_values=True))
        status, payload = self.backend.dispatch(
            endpoint, key, path_params=path_params, query=query, body=body, path=path
        )
        return status, payload, {}


class _Counter:
    """Outermost layer: counts every request, in total and per endpoint name."""

    def __init__(self, app: ASGIApp, counts: Counter[str]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                name = find_endpoint(scope["method"], scope["path"])[0].name
            except UnknownEndpoint:
                name = UNKNOWN
            self.counts["total"] += 1
            self.counts[name] += 1
        await self.app(scope, receive, send)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_app(backend: Backend, middleware: Sequence[Middleware] = ()) -> ASGIApp:
    """The ASGI app for ``backend``, wrapped in ``middleware`` (first is outermost)."""
    app: ASGIApp = _Core(backend)
    for wrap in reversed(middleware):
        app = wrap(app)
    return _Counter(app, backend.request_count)
