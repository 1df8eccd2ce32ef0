"""The receiver-kill drill: the webhook receiver (a ``closeguard run`` receiver process)
SIGKILLed in the middle of a burst of signed deliveries, restarted, and everything not
answered 200 sent again, as Close retries it.

Figures: deliveries, answered 200 before the kill, events in the inbox afterwards, events
answered 200 but missing from the inbox (lost: a 200 is only sent after the commit),
and events stored more than once (duplicated).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select

from closeguard.store import Store
from closeguard.store.cursors import Cursors, StoredSubscription
from closeguard.tools.webhooks import compute_signature
from closeguard.workflows.receiver import DEFAULT_PATH

__all__ = ["ReceiverFigures", "receiver_drill"]

KEY = "5ec0" * 16


@dataclass
class ReceiverFigures:
    deliveries: int = 0
    answered_before_kill: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0


def _delivery(i: int) -> tuple[str, bytes, dict[str, str]]:
    lead = f"lead_drill{i:06d}"
    event = {"id": f"ev_drill{i:06d}", "object_type": "lead", "action": "created"}
    body = json.dumps(
        {
            "subscription_id": "whsub_drill",
            "event": {**event, "lead_id": lead, "data": {"id": lead}},
        }
    ).encode()
    stamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        "close-sig-timestamp": stamp,
        "close-sig-hash": compute_signature(KEY, stamp, body),
    }
    return event["id"], body, headers


async def _start(store_url: str, port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "closeguard.drills._receiver", store_url, str(port)
    )
    for _ in range(1500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None:
                raise RuntimeError("the receiver exited") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return process
    raise TimeoutError("the receiver did not start within 30 s")


async def _send(url: str, batch: list[tuple[str, bytes, dict[str, str]]], acked: set[str]) -> None:
    gate = asyncio.Semaphore(16)

    async def one(
        client: httpx.AsyncClient, event_id: str, body: bytes, headers: dict[str, str]
    ) -> None:
        async with gate:
            try:
                answer = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                return
            if answer.status_code == 200:
                acked.add(event_id)

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(one(client, *d) for d in batch))


async def receiver_drill(
    folder: Path, *, deliveries: int = 2000, kill_after: int = 300
) -> ReceiverFigures:
    """Run the drill in ``folder`` (a fresh directory)."""
    store_url = f"sqlite:///{folder / 'store.db'}"
    store = Store(store_url)
    pairs = (("lead", "created"),)
    Cursors(store).save_subscription(StoredSubscription("whsub_drill", "-", pairs, KEY))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}{DEFAULT_PATH}"
    batch = [_delivery(i) for i in range(deliveries)]
    figures = ReceiverFigures(deliveries=deliveries)
    acked: set[str] = set()
    process = await _start(store_url, port)
    sending = asyncio.create_task(_send(url, batch, acked))
    for _ in range(3000):
        if len(acked) >= kill_after or sending.done():
            break
        await asyncio.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    await process.wait()
    figures.answered_before_kill = len(acked)
    await sending
    before_kill = set(acked)
    process = await _start(store_url, port)
    try:
        await _send(url, batch, acked)
    finally:
        process.kill()
        await process.wait()
    inbox = store.tables["inbox"]
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(inbox.c.event_id))]
        runs = conn.execute(select(func.count()).select_from(store.tables["runs"])).scalar_one()
    figures.stored = len(set(ids))
    figures.lost = len(before_kill - set(ids)) + (deliveries - figures.stored)
    figures.duplicated = len(ids) - len(set(ids)) + max(0, runs - figures.stored)
    store.dispose()
    return figures
