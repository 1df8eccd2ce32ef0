"""The webhook receiver: a small ASGI app that takes Close's signed deliveries into the inbox.

``POST /webhooks/close`` (the path is configurable) answers, in this order:

- 413 when the body is larger than ``max_body`` (by ``content-length``, or while reading:
  the body is read in chunks and reading stops past the cap);
- 401 when the ``close-sig-hash`` / ``close-sig-timestamp`` headers are missing, the
  signature does not match any stored key, or the timestamp is more than 5 minutes away
  (``tools.webhooks.SignatureVerifier``);
- 400 when the body is not JSON, not an object, or has no ``event.id``;
- 200 once the event is durably stored in the inbox (a duplicate is also 200, stored once);
- 503 when the inbox cannot store it in time (``store_timeout``, well under Close's 15 s),
  so Close retries the delivery later.

Group commit: deliveries that arrive while the inbox is committing wait for the next commit
and are stored together, in one ``add_many`` (one transaction), so a burst costs one commit
per batch instead of one per delivery, and a lone delivery is committed at once.

``GET /healthz``, ``/readyz`` and ``/metrics`` are ``telemetry.Probes`` (``probes``: the
runtime adds its readiness checks; the receiver's own part is ready while it serves).
Nothing a sender puts in a request leads to a 500 or a traceback: every refusal is a short
JSON ``{"error": ...}``.

Keys come from ``keys``: a callable returning the current hex keys (for example the stored
subscription keys) or a fixed list. They are read at startup and re-read, at most every
``reload_interval`` seconds, when a delivery matches none of them, so a key stored by
``closeguard webhooks sync`` in another process is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from closeguard.telemetry import Probes, tracing
from closeguard.telemetry.metrics import record_delivery
from closeguard.tools import Clock, SystemClock
from closeguard.tools.serving import serve_on_socket
from closeguard.tools.webhooks import (
    DEFAULT_TOLERANCE,
    SIG_HASH,
    SIG_TIMESTAMP,
    SignatureVerifier,
    Verdict,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_PATH",
    "EventSink",
    "GroupCommit",
    "KeySource",
    "WebhookReceiver",
    "build_receiver_app",
    "serve",
]

log = logging.getLogger("closeguard.workflows.receiver")

DEFAULT_PATH = "/webhooks/close"
DEFAULT_MAX_BODY = 1024 * 1024
SOURCE = "webhook"

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
KeySource = Callable[[], Iterable[str]] | Iterable[str]


class EventSink(Protocol):
    """Where accepted events go: the durable inbox (``Inbox``): stores a batch of events in
    one transaction, deduplicated by event id, and returns how many were new."""

    async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int: ...


class GroupCommit:
    """Stores events through ``sink.add_many``, batching those that arrive during a commit.

    ``await add(event)`` returns once the batch holding the event is committed, or raises
    what the sink raised. ``new`` counts the events the sink reported new.
    """

    def __init__(self, sink: EventSink, source: str, *, max_batch: int = 500) -> None:
        self.sink = sink
        self.source = source
        self.max_batch = max_batch
        self.new = 0
        self.commits = 0
        self._waiting: list[tuple[Mapping[str, Any], asyncio.Future[BaseException | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, event: Mapping[str, Any]) -> None:
        done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        error = await asyncio.shield(done)
        if error is not None:
            raise error

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            outcome: BaseException | None = None
            try:
                self.new += await self.sink.add_many([e for e, _ in batch], source=self.source)
                self.commits += 1
            except Exception as exc:
                outcome = exc
            for _, done in batch:
                if not done.done():
                    done.set_result(outcome)


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class WebhookReceiver:
    """The ASGI app (see the module docstring). ``stats`` counts outcomes by name (``stored``
    counts deliveries answered 200, duplicates included; ``group.new`` the new events)."""

    def __init__(
        self,
        inbox: EventSink,
        keys: KeySource,
        *,
        clock: Clock | None = None,
        path: str = DEFAULT_PATH,
        max_body: int = DEFAULT_MAX_BODY,
        tolerance: float = DEFAULT_TOLERANCE,
        store_timeout: float = 10.0,
        reload_interval: float = 2.0,
        probes: Probes | None = None,
    ) -> None:
        self.inbox = inbox
        self.group = GroupCommit(inbox, SOURCE)
        self.path = path
        self.max_body = max_body
        self.store_timeout = store_timeout
        self.reload_interval = reload_interval
        self.stats: Counter[str] = Counter()
        self.clock: Clock = clock or SystemClock()
        self.verifier = SignatureVerifier(clock=self.clock, tolerance=tolerance)
        self._keys = keys
        self._loaded_at: float | None = None
        self._reload_lock = asyncio.Lock()
        self.accepting = False
        self.probes = probes or Probes()
        self.probes.part("receiver", lambda: None if self.accepting else "not accepting deliveries")

    # -- keys ------------------------------------------------------------------------

    async def reload_keys(self) -> None:
        """Read the keys again from their source (a callable runs in a worker thread)."""
        source = self._keys
        keys = await asyncio.to_thread(lambda: list(source())) if callable(source) else source
        self.verifier.set_keys(keys)
        self._loaded_at = self.clock.monotonic()

    async def _reload(self) -> bool:
        try:
            await self.reload_keys()
        except Exception as exc:
            log.error("could not read the signature keys: %s", type(exc).__name__)
            return False
        return True

    async def _verify(
        self, timestamp: str | None, signature: str | None, body: bytes
    ) -> Verdict | None:
        """The verdict, or None when the keys cannot be read (the delivery gets a 503)."""
        if self._loaded_at is None:
            async with self._reload_lock:
                if self._loaded_at is None and not await self._reload():
                    return None
        verdict = self.verifier.check(timestamp, signature, body)
        if verdict in (Verdict.MISMATCH, Verdict.NO_KEY) and callable(self._keys):
            async with self._reload_lock:
                assert self._loaded_at is not None
                if self.clock.monotonic() - self._loaded_at >= self.reload_interval:
                    if not await self._reload():
                        self._loaded_at = self.clock.monotonic()
                        return None
                    verdict = self.verifier.check(timestamp, signature, body)
        return verdict

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if await self.probes.handle(scope, send):
            return
        if path != self.path:
            await self._refuse(send, 404, "not_found", "not found")
        elif method != "POST":
            await self._refuse(send, 405, "method", "use POST", allow="POST")
        else:
            await self._delivery(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.reload_keys()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                self.accepting = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.accepting = False
                await send({"type": "lifespan.shutdown.complete"})
                return

    @tracing.traced("webhook.delivery")
    async def _delivery(self, scope: Scope, receive: Receive, send: Send) -> None:
        record_delivery("received")
        headers = _headers(scope)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            status = 413 if declared.isdigit() else 400
            await self._refuse(send, status, "too_large", "body too large or bad length")
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await self._refuse(send, 413, "too_large", f"body over {self.max_body} bytes")
            return
        except _Disconnected:
            self.stats["disconnected"] += 1
            record_delivery("disconnected")
            return
        verdict = await self._verify(headers.get(SIG_TIMESTAMP), headers.get(SIG_HASH), body)
        if verdict is None:
            await self._refuse(send, 503, "keys_unavailable", "signature keys unavailable; retry")
            return
        if not verdict.ok:
            await self._refuse(send, 401, f"unauthorized_{verdict.name.lower()}", verdict.value)
            return
        event = _event_of(body)
        if event is None:
            await self._refuse(send, 400, "malformed", "expected a JSON object with event.id")
            return
        await self._store(event, send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _store(self, event: Mapping[str, Any], send: Send) -> None:
        try:
            async with asyncio.timeout(self.store_timeout):
                await self.group.add(event)
        except Exception as exc:
            log.error("could not store event %s: %s", event["id"], type(exc).__name__)
            await self._refuse(send, 503, "store_failed", "could not store the event; retry")
            return
        self.stats["stored"] += 1
        record_delivery("stored")
        tracing.current(outcome="stored", event=f"{event.get('object_type')}.{event.get('action')}")
        await _answer(send, 200, {"status": "stored"})

    async def _refuse(
        self, send: Send, status: int, reason: str, message: str, *, allow: str | None = None
    ) -> None:
        self.stats[reason] += 1
        record_delivery(reason)
        tracing.current(outcome=reason, status=status)
        if status in (400, 401, 413):
            log.warning("refused a delivery (%d): %s", status, message)
        extra = [(b"allow", allow.encode())] if allow else []
        await _answer(send, status, {"error": message}, extra)


_READ = frozenset(name.encode("latin-1") for name in (SIG_TIMESTAMP, SIG_HASH, "content-length"))


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the receiver reads (lower-case names), decoded; no others."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered in _READ:
            found[lowered.decode("latin-1")] = value.decode("latin-1")
    return found


def _event_of(body: bytes) -> Mapping[str, Any] | None:
    """The delivery's ``event``, if the body is a JSON object whose event has a string id."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict):
        return None
    event_id = event.get("id")
    return event if isinstance(event_id, str) and event_id else None


async def _answer(
    send: Send, status: int, payload: Mapping[str, Any], extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_receiver_app(
    inbox: EventSink,
    keys: KeySource,
    *,
    clock: Clock | None = None,
    path: str = DEFAULT_PATH,
    max_body: int = DEFAULT_MAX_BODY,
    probes: Probes | None = None,
) -> WebhookReceiver:
    """The receiver app for ``inbox`` checking signatures with ``keys`` (see the module doc)."""
    return WebhookReceiver(inbox, keys, clock=clock, path=path, max_body=max_body, probes=probes)


@contextlib.asynccontextmanager
async def serve(
    app: WebhookReceiver, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop; yields the base URL (port 0: any free)."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it each answer's body waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    failure = RuntimeError(f"the webhook receiver did not start on {host}:{bound}")
    async with serve_on_socket(
        app, sock, lifespan="on", not_started=failure, startup_timeout=startup_timeout
    ):
        yield f"http://{host}:{bound}"
