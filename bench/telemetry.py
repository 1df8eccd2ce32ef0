"""What traces and metrics cost: ``bench/guard.py`` and ``bench/webhooks.py`` under each mode.

    .venv/bin/python bench/telemetry.py [--bench guard|webhooks|both] [--modes off,metrics,...]
                                        [-- ARGS FOR THE BENCH]

Each mode runs the unchanged bench in a fresh process (tracing is configured once a
process), set up before the bench's ``main``:

- ``off``: nothing (the default of a command that serves nothing);
- ``metrics``: Prometheus metrics recorded (``metrics.enable()``, as ``closeguard run`` does);
- ``spans``: metrics, and every span made by the SDK but exported nowhere (a provider
  without processors): the cost of the instrumentation and the SDK alone;
- ``otlp``: metrics, and spans exported over OTLP/HTTP (``OTEL_TRACES_EXPORTER=otlp``, the
  ``otel-otlp`` extra) to a sink on 127.0.0.1 that answers 200, batched as in production.

First, in-process and free of the end-to-end benches' noise, what the instrumentation
adds to one guarded request (the ``close.request`` span, the audit row's counters and span
attributes, the pacing's wait counter) in a subprocess per mode; target with telemetry
off: <= 1 us, i.e. nothing beside the guard's own tens of microseconds.

Then it prints the benches' headline figures per mode, the change against ``off``, and the load
average before each run. Target: metrics, always on in a serving process, cost <= 5 % of
the guarded/unguarded throughput ratio (``guard``) and of delivery throughput
(``webhooks``). Spans are opt-in and their cost is the OpenTelemetry SDK's (tens of
microseconds a span in CPython): reported, with no target; sampling
(``OTEL_TRACES_SAMPLER=parentbased_traceidratio``) bounds it.
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("off", "metrics", "spans", "otlp")
TARGET = 0.05

SETUP = {
    "off": "",
    "metrics": "from closeguard.telemetry import metrics; metrics.enable()\n",
    "spans": (
        "from closeguard.telemetry import metrics, tracing; metrics.enable()\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "tracing.use(TracerProvider())\n"
    ),
    "otlp": (
        "from closeguard.telemetry import metrics, tracing; metrics.enable()\n"
        "assert tracing.configure()\n"
    ),
}
RUNNER = (
    "import runpy, sys\n"
    "{setup}"
    "sys.argv = [{path!r}, *{args!r}]\n"
    "runpy.run_path({path!r}, run_name='__main__')\n"
)
FIGURES = {
    "guard": {
        "overhead us": r"guard overhead per request \(no-op\)\s+([\d.]+) us",
        "guarded calls/s": r"guarded \(audit committed\), median\s+(\d+) calls/s",
        "guarded/unguarded %": r"guarded/unguarded, median of \d+ pairs\s+([\d.]+)%",
    },
    "webhooks": {
        "deliveries/s": r"= ([\d,]+)/s \(target",
        "p99 ms": r"p99 ([\d.]+) ms \(target",
    },
}
HEADLINE = {"guard": "guarded/unguarded %", "webhooks": "deliveries/s"}
"""What the target is checked on: the paired ratio for the guard (pairs run back to back,
so load on the machine largely cancels out), deliveries per second for the receiver."""


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that takes every export and keeps nothing."""

    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).received += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


MICRO = (
    "import asyncio, time\n"
    "from closeguard.guardrails.audit import _observe\n"
    "from closeguard.telemetry.metrics import record_rate_wait\n"
    "from closeguard.telemetry.tracing import traced\n"
    "row = ('bot', 'run_1', 'c1', 1, 'bench', 'lead.get', 'GET', '/lead/x/', 'read', 'allow',\n"
    "       'grants.lead', None, '{}', 200, 90, None, None)\n"
    "async def bare():\n"
    "    return None\n"
    "@traced('close.request', lambda: {'actor': 'bot', 'policy': 'bench', 'method': 'GET'})\n"
    "async def request():\n"
    "    record_rate_wait(0.0)\n"
    "    _observe(row)\n"
    "async def main(n):\n"
    "    best = {}\n"
    "    for name, fn in (('bare', bare), ('instrumented', request)):\n"
    "        runs = []\n"
    "        for _ in range(5):\n"
    "            t = time.perf_counter()\n"
    "            for _ in range(n):\n"
    "                await fn()\n"
    "            runs.append((time.perf_counter() - t) / n * 1e6)\n"
    "        best[name] = min(runs)\n"
    "    print(f\"{best['instrumented'] - best['bare']:.2f}\")\n"
    "asyncio.run(main(20000))\n"
)


def micro(mode: str, endpoint: str) -> float:
    """Microseconds the instrumentation adds to one request under ``mode`` (best of 5)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode == "otlp":
        env |= {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    done = subprocess.run(
        [sys.executable, "-c", SETUP[mode] + MICRO], capture_output=True, text=True, env=env
    )
    if done.returncode:
        print(done.stderr[-2000:])
        return float("nan")
    return float(done.stdout.split()[-1])


def run(bench: str, mode: str, args: list[str], endpoint: str) -> dict[str, float]:
    path = str(HERE / f"{bench}.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode == "otlp":
        env |= {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    code = RUNNER.format(setup=SETUP[mode], path=path, args=args)
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    figures: dict[str, float] = {}
    for name, pattern in FIGURES[bench].items():
        found = re.search(pattern, done.stdout)
        if found:
            figures[name] = float(found.group(1).replace(",", ""))
    if not figures:
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n")
    shown = ", ".join(f"{k} {v:,.1f}" for k, v in figures.items())
    print(f"{bench:<9} {mode:<8} load {load:5.2f}   {shown}", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", choices=("guard", "webhooks", "both"), default="both")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--micro-only", action="store_true", help="only the per-request figure")
    parser.add_argument("rest", nargs="*", help="arguments for the bench (after --)")
    opts = parser.parse_args()
    modes = [m for m in opts.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    benches = ["guard", "webhooks"] if opts.bench == "both" else [opts.bench]
    ok = True
    for mode in modes:
        load = os.getloadavg()[0]
        added = micro(mode, endpoint)
        target, passed = ("<= 1 us", added <= 1.0) if mode == "off" else ("", None)
        verdict = "" if passed is None else ("PASS" if passed else "FAIL")
        ok = ok and passed is not False
        print(
            f"request  {mode:<8} load {load:5.2f}   instrumentation adds {added:7.2f} us "
            f"a request   {target} {verdict}",
            flush=True,
        )
    if opts.micro_only:
        server.shutdown()
        return 0 if ok else 1
    for bench in benches:
        results = {mode: run(bench, mode, opts.rest, endpoint) for mode in modes}
        base = results.get("off", {}).get(HEADLINE[bench])
        for mode in modes:
            value = results[mode].get(HEADLINE[bench])
            if base is None or value is None or mode == "off":
                continue
            cost = 1 - value / base
            passed = cost <= TARGET if mode == "metrics" else None
            ok = ok and passed is not False
            verdict = "" if passed is None else ("PASS" if passed else "FAIL")
            print(
                f"{bench:<9} {mode:<8} {HEADLINE[bench]} {cost:+.1%} against off "
                f"(target <= {TARGET:.0%} for metrics) {verdict}"
            )
    server.shutdown()
    print(f"OTLP exports received by the sink: {_Sink.received}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
