"""What a personal token costs per request (run by hand: ``.venv/bin/python bench/accounts.py
[requests]``).

``Accounts.authenticate`` on a temp SQLite store: the first check of a token in a process
(the row read plus scrypt, n=2**14, r=8: deliberately slow), and every later one (the row
read plus a SHA-256 and a constant-time compare: what a console or API request pays). Then
a whole ``GET /api/approvals/{id}`` through the console app with a Bearer token.
Targets: first check <= 250 ms, later checks p50 <= 2 ms, API request p50 <= 10 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.testclient import TestClient

from closeguard.console import ConsoleConfig, build_console
from closeguard.guardrails import Accounts, Approvals
from closeguard.store import Store
from closeguard.tools.catalog import classify


def line(label: str, value: str, target: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL")
    print(f"accounts  {label:<40} {value:>12}   {target:<12} {verdict}")


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    line(f"load average, 1 min ({os.cpu_count()} cores)", f"{os.getloadavg()[0]:.2f}", "quiet")
    store = Store(f"sqlite:///{Path(tempfile.mkdtemp(prefix='cg-bench-')) / 'accounts.db'}")
    for i in range(20):
        Accounts(store).add(f"person{i}", roles=["rep"])
    _, token = Accounts(store).add("maria", roles=["sales-manager"])

    first = []
    for _ in range(5):
        fresh = Accounts(store)  # a new process knows no verified token
        started = time.perf_counter()
        assert fresh.authenticate(token) is not None
        first.append(time.perf_counter() - started)
    accounts = Accounts(store)
    accounts.authenticate(token)
    later = []
    for _ in range(n):
        started = time.perf_counter()
        accounts.authenticate(token)
        later.append(time.perf_counter() - started)

    approval = Approvals(store).request(
        classify("DELETE", "/lead/lead_1/"), method="DELETE", path="/lead/lead_1/"
    )
    headers = {"authorization": f"Bearer {token}"}
    api = []
    with TestClient(build_console(ConsoleConfig(store=store, token="t" * 32))) as client:
        client.get(f"/api/approvals/{approval.id}", headers=headers)
        for _ in range(min(n, 500)):
            started = time.perf_counter()
            answer = client.get(f"/api/approvals/{approval.id}", headers=headers)
            api.append(time.perf_counter() - started)
            assert answer.status_code == 200

    f50, l50, l99, a50 = statistics.median(first) * 1000, p(later, 0.5), p(later, 0.99), p(api, 0.5)
    line("first check of a token (scrypt), median", f"{f50:.1f} ms", "<= 250 ms", f50 <= 250)
    line(f"later checks, p50 of {n}", f"{l50:.3f} ms", "<= 2 ms", l50 <= 2)
    line(f"later checks, p99 of {n}", f"{l99:.3f} ms")
    line(f"GET /api/approvals/ID, p50 of {len(api)}", f"{a50:.2f} ms", "<= 10 ms", a50 <= 10)
    return 0 if f50 <= 250 and l50 <= 2 and a50 <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
