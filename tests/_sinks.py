"""Notification sinks on 127.0.0.1: an HTTP server for Apprise's ``json://`` and an SMTP
server (aiosmtpd) for ``mailto://``. Each records what it received."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    """What a sink got: (path or recipients, payload, time received)."""

    items: list[tuple[str, Any, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_first: int = 0
    """Answer 500 to this many requests first (to exercise retries)."""

    def add(self, where: str, payload: Any) -> None:
        with self.lock:
            self.items.append((where, payload, time.perf_counter()))

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any, float]]:
        """Poll (bounded) until ``count`` items arrived; what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= count:
                    return list(self.items)
            time.sleep(0.005)
        with self.lock:
            return list(self.items)


@contextmanager
def json_sink() -> Iterator[tuple[str, Received]]:
    """``json://127.0.0.1:PORT`` and what it received, by path."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            payload = json.loads(self.rfile.read(size) or b"{}")
            with received.lock:
                failing = received.fail_first > 0
                received.fail_first -= 1 if failing else 0
            if failing:
                self.send_response(500)
                self.end_headers()
                return
            received.add(self.path, payload)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_sink() -> Iterator[tuple[int, Received]]:
    """An SMTP server on 127.0.0.1 (its port) and the mails it received."""
    received = Received()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail: Message = message_from_bytes(envelope.original_content or b"")
            received.add(",".join(envelope.rcpt_tos), mail)
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def text_of(mail: Message) -> str:
    """A mail's text body."""
    parts: list[Callable[[], Any]] = []
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            parts.append(lambda p=part: p.get_payload(decode=True).decode())
    return "\n".join(p() for p in parts)
