"""Start and stop ``tests/_scale_proc.py`` processes against one store (scale-out tests and
``bench/scale.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from closeguard.store import Store

PROC = Path(__file__).with_name("_scale_proc.py")
LOG_TABLE = (
    "CREATE TABLE IF NOT EXISTS scale_log (id bigserial PRIMARY KEY, run_id text NOT NULL, "
    "kind text NOT NULL, lead text, n integer, tick text, pid integer)"
)


def prepare(url: str) -> Store:
    """The store at ``url`` (migrated) with the test workflows' log table."""
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text(LOG_TABLE))
    return store


class Cluster:
    """Processes of ``_scale_proc.py``; ``close()`` stops them (SIGTERM, then SIGKILL)."""

    def __init__(self, folder: Path, store_url: str, **env: str) -> None:
        self.folder = folder
        self.env = {**os.environ, "CLOSEGUARD_STORE_URL": store_url, **env}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, roles: str, workflows: str, *, count: int = 1, **env: str
    ) -> list[tuple[int, str]]:
        """Start ``count`` processes at once (``env`` added to theirs), wait until each is
        ready; their indexes and what each wrote once ready (the receiver's URL)."""
        started = []
        for _ in range(count):
            index = len(self.procs)
            with open(self.folder / f"proc-{index}.log", "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, str(PROC), roles, workflows, str(self._ready(index))],
                        env={**self.env, **env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            started.append(index)
        return [(index, self._wait(index)) for index in started]

    def _ready(self, index: int) -> Path:
        return self.folder / f"ready-{index}"

    def _wait(self, index: int, within: float = 60.0) -> str:
        ready, proc = self._ready(index), self.procs[index]
        deadline = time.monotonic() + within
        while not ready.exists() or not ready.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"process {index} did not start: {self.output(index)}")
            time.sleep(0.05)
        return ready.read_text()

    def pid(self, index: int) -> int:
        return self.procs[index].pid

    def output(self, index: int) -> str:
        return (self.folder / f"proc-{index}.log").read_text(errors="replace")[-3000:]

    def kill(self, index: int) -> None:
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait(10)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
