"""Rate-limit pacing: read every lead of a big organization at Close's per-key limit.

    .venv/bin/python bench/pacing.py [--leads 20000] [--rps 20] [--page-size 100]

Serves the simulator (uvicorn on 127.0.0.1, in a child process) with ``--leads`` leads and a
limit of ``--rps`` requests per second per API key on the ``lead:read`` group, then reads all
leads once with ``CloseClient.leads.iter()`` and once with the official ``closeio_api.API``
client paging the usual way (``_skip``/``_limit`` with ``api.get('lead', params=...)``), each
with its own key. Per row: wall time against the ideal (pages / limit), the share of the
ceiling reached, the 429s the server sent to that key (counted server side) and the errors
the client surfaced. Target for ours: >= 95% of the ceiling, no errors, 429s under 2% of
requests.

The official client parses ``reset=(\\d+)`` from the ``RateLimit`` header, so a decimal
reset such as ``reset=0.437`` reads as 0 and it retries at once; after five 429s in a row
it raises. Here each error is counted and the page asked again after one second, as a
careful caller would. Windows are fixed one-second windows, so a run can beat the ideal
slightly (the first and last windows are partial).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from closeguard.simulator.core import Simulator
from closeguard.simulator.ratelimit import RateLimits, credential_id

OURS_KEY = "bench_key_closeguard"
OFFICIAL_KEY = "bench_key_official"
MAX_OFFICIAL_ERRORS = 1000


def _key_id(key: str) -> str:
    import base64

    token = base64.b64encode(f"{key}:".encode()).decode()
    found = credential_id({"headers": [(b"authorization", f"Basic {token}".encode())]})
    assert found is not None
    return found


def _serve(sock: socket.socket, leads: int, rps: float, ready: Connection,
           report: Connection) -> None:
    import uvicorn

    began = time.perf_counter()
    sim = Simulator(
        seed=1,
        leads=leads,
        rate_limits=RateLimits(groups={"lead:read": rps}),
        api_keys=[OURS_KEY, OFFICIAL_KEY],
    )
    ready.send(time.perf_counter() - began)
    limiter = sim.limiter
    assert limiter is not None

    def stop(*_: Any) -> None:
        report.send((dict(limiter.allowed), dict(limiter.rejected)))
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    config = uvicorn.Config(sim.app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


async def read_ours(base: str, page_size: int) -> tuple[int, float, list[str]]:
    from closeguard.tools.client import CloseClient
    from closeguard.tools.errors import CloseguardError

    errors: list[str] = []
    count = 0
    began = time.perf_counter()
    async with CloseClient(api_key=OURS_KEY, base_url=base) as client:
        try:
            async for _lead in client.leads.iter(page_size=page_size):
                count += 1
        except CloseguardError as exc:
            errors.append(type(exc).__name__)
    return count, time.perf_counter() - began, errors


def read_official(base: str, page_size: int) -> tuple[int, float, list[str]]:
    from closeio_api import API, APIError

    api = API(base + "/", api_key=OFFICIAL_KEY)
    errors: list[str] = []
    count = skip = 0
    began = time.perf_counter()
    while len(errors) < MAX_OFFICIAL_ERRORS:
        try:
            page = api.get("lead", params={"_skip": skip, "_limit": page_size})
        except APIError as exc:
            errors.append(f"APIError {exc.response.status_code}")
            time.sleep(1)
            continue
        count += len(page["data"])
        if not page["has_more"]:
            break
        skip += page_size
    return count, time.perf_counter() - began, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pacing at Close's rate limit.")
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args(argv)

    ctx = mp.get_context("fork")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    ready_recv, ready_send = ctx.Pipe(duplex=False)
    report_recv, report_send = ctx.Pipe(duplex=False)
    server = ctx.Process(
        target=_serve, args=(sock, args.leads, args.rps, ready_send, report_send), daemon=True
    )
    server.start()
    try:
        build_seconds = ready_recv.recv()
        _wait_until_up(base)
        ours = asyncio.run(read_ours(base, args.page_size))
        official = read_official(base, args.page_size)
    finally:
        server.terminate()
        allowed, rejected = report_recv.recv() if report_recv.poll(10) else ({}, {})
        server.join(5)
        sock.close()

    pages = math.ceil(args.leads / args.page_size)
    ideal = pages / args.rps
    print(f"{args.leads} leads (built in {build_seconds:.1f} s), page size {args.page_size}: "
          f"{pages} pages; limit {args.rps:g} rps per key on lead:read; ideal {ideal:.2f} s")
    print(f"{'client':<22} {'leads':>6} {'wall s':>7} {'ideal s':>7} {'ceiling':>8} "
          f"{'requests':>8} {'429s':>5} {'429 %':>6} {'errors':>6}")
    ok = True
    for name, key, (count, wall, errors) in (
        ("closeguard CloseClient", OURS_KEY, ours),
        ("closeio_api.API", OFFICIAL_KEY, official),
    ):
        kid = _key_id(key)
        limited = rejected.get(kid, 0)
        requests = allowed.get(kid, 0) + limited
        share = ideal / wall if wall else 0.0
        pct = 100 * limited / requests if requests else 0.0
        print(f"{name:<22} {count:>6} {wall:>7.2f} {ideal:>7.2f} {share:>7.0%} "
              f"{requests:>8} {limited:>5} {pct:>5.1f}% {len(errors):>6}")
        if key == OURS_KEY:
            ok = share >= 0.95 and not errors and pct < 2 and count == args.leads
    print("targets for closeguard: ceiling >= 95%, 0 errors, 429s < 2% ->",
          "met" if ok else "MISSED")
    return 0 if ok else 1


def _wait_until_up(base: str) -> None:
    import httpx

    for _ in range(600):
        try:
            httpx.get(f"{base}/me/", timeout=1)  # no key: answered 401, never counted
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("served simulator did not come up")


if __name__ == "__main__":
    sys.exit(main())
