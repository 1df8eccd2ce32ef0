"""Rate-limit pacing: read every lead of a big organization at Close's per-key limit.

    .venv/bin/python bench/pacing.py [--leads 20000] [--rps 20] [--page-size 100]

Serves the simulator (uvicorn on 127.0.0.1, in a child process) with ``--leads`` leads and a
limit of ``--rps`` requests per second per API key on the ``lead:read`` group, then reads all
leads once with ``CloseClient.leads.iter()`` and once with the official ``closeio_api.API``
client paging the usual way (``_skip``/``_limit`` with ``api.get('lead', params=...)``), each
with its own key. Per row: wall time, the true minimum time for that run, the efficiency
(minimum / wall), the 429s the server sent to that key (counted server side) and the errors
the client surfaced. Targets for ours: efficiency >= 90 %, no errors, 429s under 2 % of
requests, every lead read.

The true minimum follows the simulator's own rule (``closeguard/simulator/ratelimit.py``):
fixed windows ``[k*W, (k+1)*W)`` on the epoch clock, ``N = RateLimits.key_limit(group)``
calls per key in each. A run that starts at epoch time ``t0`` in window ``k0 = floor(t0/W)``
and needs ``R = ceil(leads / page_size)`` pages cannot have its last page admitted before
window ``k0 + ceil(R/N) - 1`` opens, so it takes at least ``(k0 + ceil(R/N) - 1)*W - t0``
seconds: ``(ceil(R/N) - 1)*W`` minus how far into its first window it started. A client
that sends ``N`` at once and ``N`` more as each window opens reaches it (plus the last
page's latency), and none can beat it; a rounded ideal such as ``R/rps`` can be beaten by
up to one window.

The official client parses ``reset=(\\d+)`` from the ``RateLimit`` header, so a decimal
reset such as ``reset=0.437`` reads as 0 and it retries at once; after five 429s in a row
it raises. Here each error is counted and the page asked again after one second, as a
careful caller would.
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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from closeguard.simulator.core import Simulator
from closeguard.simulator.ratelimit import RateLimits, credential_id

OURS_KEY = "bench_key_closeguard"
OFFICIAL_KEY = "bench_key_official"
MAX_OFFICIAL_ERRORS = 1000
GROUP = "lead:read"


def min_seconds(requests: int, per_window: int, window: float, start: float) -> float:
    """The least time from epoch ``start`` until the last of ``requests`` calls is admitted
    by fixed windows of ``window`` seconds aligned on the epoch, ``per_window`` calls each."""
    first = math.floor(start / window)
    windows = math.ceil(requests / per_window)
    return max(0.0, (first + windows - 1) * window - start)


@dataclass
class Run:
    """One client's read of every lead: what it got, when it began (epoch), how long."""

    count: int
    began: float
    wall: float
    errors: list[str]


def _key_id(key: str) -> str:
    import base64

    token = base64.b64encode(f"{key}:".encode()).decode()
    found = credential_id({"headers": [(b"authorization", f"Basic {token}".encode())]})
    assert found is not None
    return found


def _serve(
    sock: socket.socket, leads: int, limits: RateLimits, ready: Connection, report: Connection
) -> None:
    import uvicorn

    began = time.perf_counter()
    sim = Simulator(seed=1, leads=leads, rate_limits=limits, api_keys=[OURS_KEY, OFFICIAL_KEY])
    ready.send(time.perf_counter() - began)
    limiter = sim.limiter
    assert limiter is not None

    def stop(*_: Any) -> None:
        report.send((dict(limiter.allowed), dict(limiter.rejected)))
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    config = uvicorn.Config(sim.app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


async def read_ours(base: str, page_size: int) -> Run:
    from closeguard.tools.client import CloseClient
    from closeguard.tools.errors import CloseguardError

    errors: list[str] = []
    count = 0
    began, t0 = time.time(), time.perf_counter()
    async with CloseClient(api_key=OURS_KEY, base_url=base) as client:
        try:
            async for _lead in client.leads.iter(page_size=page_size):
                count += 1
        except CloseguardError as exc:
            errors.append(type(exc).__name__)
    return Run(count, began, time.perf_counter() - t0, errors)


def read_official(base: str, page_size: int) -> Run:
    from closeio_api import API, APIError

    api = API(base + "/", api_key=OFFICIAL_KEY)
    errors: list[str] = []
    count = skip = 0
    began, t0 = time.time(), time.perf_counter()
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
    return Run(count, began, time.perf_counter() - t0, errors)


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pacing at Close's rate limit.")
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args(argv)
    limits = RateLimits(groups={GROUP: args.rps})
    per_window, window = limits.key_limit(GROUP), limits.window

    ctx = mp.get_context("fork")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    ready_recv, ready_send = ctx.Pipe(duplex=False)
    report_recv, report_send = ctx.Pipe(duplex=False)
    server = ctx.Process(
        target=_serve, args=(sock, args.leads, limits, ready_send, report_send), daemon=True
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
    print(
        f"{args.leads} leads (built in {build_seconds:.1f} s), page size {args.page_size}: "
        f"{pages} pages; {per_window} calls per {window:g} s window per key on {GROUP} "
        f"({math.ceil(pages / per_window)} windows)"
    )
    print(
        f"{'client':<22} {'leads':>6} {'phase s':>7} {'min s':>6} {'wall s':>7} "
        f"{'effic.':>7} {'requests':>8} {'429s':>5} {'429 %':>6} {'errors':>6}"
    )
    figures: dict[str, tuple[Run, float, float]] = {}
    for name, key, run in (
        ("closeguard CloseClient", OURS_KEY, ours),
        ("closeio_api.API", OFFICIAL_KEY, official),
    ):
        kid = _key_id(key)
        limited = rejected.get(kid, 0)
        requests = allowed.get(kid, 0) + limited
        least = min_seconds(pages, per_window, window, run.began)
        efficiency = least / run.wall if run.wall else 0.0
        pct = 100 * limited / requests if requests else 0.0
        figures[key] = (run, efficiency, pct)
        print(
            f"{name:<22} {run.count:>6} {run.began % window:>7.3f} {least:>6.2f} "
            f"{run.wall:>7.2f} {efficiency:>7.1%} {requests:>8} {limited:>5} {pct:>5.1f}% "
            f"{len(run.errors):>6}"
        )
    run, efficiency, pct = figures[OURS_KEY]
    checks = [
        ("efficiency (true minimum / wall)", f"{efficiency:.1%}", ">= 90 %", efficiency >= 0.9),
        ("errors surfaced", str(len(run.errors)), "0", not run.errors),
        ("429s of requests", f"{pct:.1f} %", "< 2 %", pct < 2),
        ("leads read", str(run.count), str(args.leads), run.count == args.leads),
    ]
    print("closeguard CloseClient against its targets:")
    for label, value, target, ok in checks:
        print(f"  {label:<34} {value:>9}   target {target:<8} {mark(ok)}")
    return 0 if all(ok for *_, ok in checks) else 1


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
