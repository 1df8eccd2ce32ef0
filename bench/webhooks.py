"""Webhook intake: verified deliveries per second into the inbox, and delivery-to-write latency.

    .venv/bin/python bench/webhooks.py [--deliveries 6000] [--connections 32] [--rate 50]
                                       [--seconds 20]

1. Throughput. The webhook receiver (``closeguard.workflows.receiver``) is served by
   uvicorn on 127.0.0.1 in this process, in front of the real ``Inbox`` on a temp SQLite
   store, with the packaged workflows enabled (each ``lead.created`` delivery also queues a
   ``new-lead-triage`` run). A child process (so the sender's CPU is not the server's)
   opens ``--connections`` keep-alive connections and posts ``--deliveries`` distinct,
   Close-signed deliveries as fast as the answers come back. The timer runs from the first
   byte sent to the last ``200`` received, and a ``200`` is only sent once the event and its
   runs are committed, so every durable write is inside it; afterwards the bench checks
   that the inbox holds every event. Target: >= 1,500 deliveries/s.
2. Latency. The same receiver and inbox with the runtime's workers, against the in-process
   simulator: a steady ``--rate`` deliveries/s for ``--seconds`` seconds, each a
   ``lead.created`` that ``new-lead-triage`` answers with writes to the simulator. Per
   delivery: from the moment it is sent until the workflow's first write lands in the
   simulator (the simulator's Event Log records it). Target: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from closeguard.store import Store
from closeguard.tools.webhooks import compute_signature
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.loader import packaged_workflows
from closeguard.workflows.receiver import DEFAULT_PATH, WebhookReceiver, serve

KEY = "a1b2c3d4" * 8
THROUGHPUT_TARGET = 1500.0
P99_TARGET_MS = 100.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def lead_created(i: int, run: str) -> dict[str, Any]:
    """A Close-shaped ``lead.created`` event (as the Event Log and webhooks carry it)."""
    lead = f"lead_bench{run}{i:07d}"
    now = "2026-11-27T12:00:00.000000+00:00"
    return {
        "id": f"ev_bench{run}{i:07d}",
        "object_type": "lead",
        "object_id": lead,
        "lead_id": lead,
        "action": "created",
        "organization_id": "orga_bench",
        "user_id": "user_bench",
        "request_id": f"req_bench{i}",
        "api_key_id": None,
        "changed_fields": [],
        "previous_data": {},
        "data": {"id": lead, "name": f"Bench lead {i}", "status_id": None, "contacts": []},
        "meta": {"request_method": "POST", "request_path": "/api/v1/lead/"},
        "date_created": now,
        "date_updated": now,
    }


def signed_request(event: dict[str, Any], host: str) -> bytes:
    """The raw HTTP/1.1 request Close would send for ``event``, signed now."""
    body = json.dumps({"subscription_id": "whsub_bench", "event": event}).encode()
    stamp = str(int(time.time()))
    head = (
        f"POST {DEFAULT_PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nclose-sig-timestamp: {stamp}\r\n"
        f"close-sig-hash: {compute_signature(KEY, stamp, body)}\r\n\r\n"
    )
    return head.encode() + body


# -- the sender (a child process) ----------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    await reader.readexactly(length)
    return status


async def _send_all(port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    queue = list(reversed(requests))
    statuses: dict[int, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            writer.write(queue.pop())
            status = await _read_response(reader)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return {"seconds": time.perf_counter() - started, "statuses": statuses}


def _sender(port: int, requests: list[bytes], connections: int, out: Connection) -> None:
    out.send(asyncio.run(_send_all(port, requests, connections)))


# -- 1. throughput -------------------------------------------------------------------------


async def throughput(deliveries: int, connections: int, folder: Path) -> tuple[float, bool]:
    store = Store(f"sqlite:///{folder / 'throughput.db'}")
    inbox = Inbox(store, packaged_workflows().values())
    app = WebhookReceiver(inbox, [KEY], max_body=256 * 1024)
    async with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        requests = [signed_request(lead_created(i, "t"), url[7:]) for i in range(deliveries)]
        warm = [signed_request(lead_created(i, "w"), url[7:]) for i in range(200)]
        ctx = mp.get_context("spawn")
        for batch in (warm, requests):
            mine, theirs = ctx.Pipe(duplex=False)
            child = ctx.Process(target=_sender, args=(port, batch, connections, theirs))
            child.start()
            result = await asyncio.to_thread(mine.recv)
            await asyncio.to_thread(child.join)
    stored = sum(1 for _ in store.engine.connect().exec_driver_sql("SELECT 1 FROM inbox"))
    store.dispose()
    rate = deliveries / result["seconds"]
    all_ok = result["statuses"] == {200: deliveries} and stored == deliveries + len(warm)
    print(
        f"throughput: {deliveries} signed deliveries over {connections} connections in "
        f"{result['seconds']:.2f} s = {rate:,.0f}/s (target >= {THROUGHPUT_TARGET:,.0f}/s) "
        f"{verdict(rate >= THROUGHPUT_TARGET and all_ok)}"
    )
    print(f"  answers {result['statuses']}, events in the inbox afterwards: {stored}")
    return rate, all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=6000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rate, ok = asyncio.run(throughput(args.deliveries, args.connections, Path(tmp)))
    passed = ok and rate >= THROUGHPUT_TARGET
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
