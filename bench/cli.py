"""Command start-up: every light ``closeguard`` command against ``python -c pass``.

    .venv/bin/python bench/cli.py [--runs 7] [--source DIR]

Runs each command of issue 23's list ``--runs`` times as a child process (the installed
``closeguard`` script, as a user types it) on a SQLite store made beforehand in a temp
folder with a few audit rows, so the store commands read a real store at the current
schema (``approvals approve``/``reject`` decide a fresh pending request each run, as the
account ``bench``; ``runs retry`` a fresh dead run). Per command: the median wall time
(start to exit), the median CPU time (user + system: less sensitive to other load than
wall time) and the largest max RSS of its runs (``os.wait4``'s rusage of that child).
Targets: <= 0.3 s wall and <= 80 MiB each.
``--source DIR`` runs the closeguard package found in DIR instead (another checkout, e.g.
``git archive main`` unpacked), to compare before and after on the same machine and load.
Printed first: the load average and the yardstick, ``python -c pass`` (the interpreter's
own start), so a slow machine shows as a slow yardstick. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

WALL_TARGET = 0.3
RSS_TARGET_MIB = 80.0
COMMANDS: list[list[str]] = [
    ["--help"],
    ["info"],
    ["catalog"],
    ["policy", "list"],
    ["policy", "check", "read-only"],
    ["policy", "explain", "read-only"],
    ["policy", "replay", "read-only", "--actor", "bench"],
    ["approvals", "list"],
    ["approvals", "show", "{approval}"],
    ["approvals", "approve", "{approval}", "--as", "bench"],
    ["approvals", "reject", "{approval}", "--as", "bench"],
    ["audit", "tail"],
    ["audit", "show", "1"],
    ["audit", "head"],
    ["audit", "verify"],
    ["audit", "export"],
    ["runs", "list"],
    ["runs", "show", "{run}"],
    ["runs", "retry", "{run}"],
    ["workflows", "list"],
]
SCRIPT = Path(sys.executable).with_name("closeguard")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, max RSS in MiB and exit code of one run of ``argv``."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    assert child.stderr is not None
    child.stderr.close()
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def measure(
    argv: list[str], env: dict[str, str], runs: int, fresh_ids: Mapping[str, Iterator[str]] = {}
) -> tuple[float, float, float, int]:
    """Median wall and CPU seconds, largest max RSS, worst exit code of ``runs`` runs; an
    ``{approval}`` (``{run}``) in ``argv`` is a pending approval's (dead run's) id, a new
    one each run."""

    def fresh() -> list[str]:
        return [next(fresh_ids[a]) if a in fresh_ids else a for a in argv]

    timed(fresh(), env)  # warm the page cache and the bytecode
    results = [timed(fresh(), env) for _ in range(runs)]
    return (
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        max(r[2] for r in results),
        max((r[3] for r in results), key=abs),
    )


MAKE_STORE = """
import sys
from closeguard.guardrails.accounts import Accounts
from closeguard.guardrails.approvals import Approvals
from closeguard.guardrails.audit import AuditLog
from closeguard.store import Store
from closeguard.store.runs import RunRows
from closeguard.tools.catalog import classify

store = Store(sys.argv[1])
log = AuditLog(store)
for seq in range(20):
    entry = {"actor": "bench", "endpoint": "lead.get", "method": "GET", "access": "read"}
    log.append({**entry, "path": f"/lead/lead_{seq}/", "decision": "allow", "args": {}})
log.flush()
Accounts(store).add("bench", roles=["admin"])
approvals, runs = int(sys.argv[2]), int(sys.argv[3])
for n in range(approvals):
    call = classify("DELETE", f"/lead/lead_{n}/", None, {})
    print(Approvals(store).request(call, method="DELETE", path=f"/lead/lead_{n}/").id)
dead = [f"run_dead_{n}" for n in range(runs)]
with store.engine.begin() as conn:
    request = {"workflow": "w", "kind": "event", "lead_id": "lead_1", "payload": {}}
    RunRows(store).insert(conn, [{"id": i, "trigger_key": i, **request} for i in dead])
    t = store.tables.runs
    conn.execute(t.update().where(t.c.id.in_(dead)).values(status="dead", attempts=5))
print(" ".join(dead))
store.dispose()
"""


def make_store(folder: Path, requests: int, dead: int) -> tuple[str, dict[str, Iterator[str]]]:
    """A store at the current schema with a few audit rows (what the commands read), an
    admin account ``bench``, ``requests`` pending approvals and ``dead`` dead runs (their
    ids, by placeholder), made in a child process: this one stays small, since a child's
    max RSS counts the memory it was forked with."""
    url = f"sqlite:///{folder / 'closeguard.db'}"
    made = subprocess.run(
        [sys.executable, "-c", MAKE_STORE, url, str(requests), str(dead)],
        check=True,
        capture_output=True,
        text=True,
    )
    ids = made.stdout.split()
    return url, {"{approval}": iter(ids[:requests]), "{run}": iter(ids[requests:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--source", metavar="DIR", help="run the closeguard package in DIR")
    args = parser.parse_args()
    entry = [str(SCRIPT)]
    if args.source:
        boot = f"import sys; sys.path.insert(0, {args.source!r}); from closeguard.cli import main"
        entry = [sys.executable, "-c", boot + "; main()"]
    with tempfile.TemporaryDirectory(prefix="closeguard-bench-cli-") as tmp:
        each = args.runs + 1
        deciding = sum("{approval}" in c for c in COMMANDS) * each
        url, ids = make_store(Path(tmp), deciding, sum("{run}" in c for c in COMMANDS) * each)
        env = dict(os.environ, CLOSEGUARD_STORE_URL=url, COLUMNS="120")
        print(f"load average: {Path('/proc/loadavg').read_text().split(' ', 3)[:3]}")
        yard, yard_cpu, yard_rss, _ = measure([sys.executable, "-c", "pass"], env, args.runs)
        print(
            f"yardstick: python -c pass  {yard * 1000:6.0f} ms wall {yard_cpu * 1000:5.0f} ms cpu"
            f"  {yard_rss:5.1f} MiB"
        )
        print(f"{'command':<51} {'wall':>8} {'x pass':>7} {'cpu':>8} {'max RSS':>9}  target")
        failed = False
        for command in COMMANDS:
            wall, cpu, rss, code = measure([*entry, *command], env, args.runs, ids)
            ok = wall <= WALL_TARGET and rss <= RSS_TARGET_MIB and code == 0
            failed |= not ok
            verdict = "PASS" if ok else "FAIL" + ("" if code == 0 else f" (exit {code})")
            shown = " ".join(command).replace("{approval}", "ID").replace("{run}", "ID")
            print(
                f"closeguard {shown:<40} {wall * 1000:6.0f} ms {wall / yard:6.1f}x"
                f" {cpu * 1000:5.0f} ms {rss:5.1f} MiB"
                f"  <= {WALL_TARGET * 1000:.0f} ms, <= {RSS_TARGET_MIB:.0f} MiB"
                f"  {verdict}"
            )
        print(f"load average after: {Path('/proc/loadavg').read_text().split(' ', 3)[:3]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
