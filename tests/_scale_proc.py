"""One ``closeguard run``-like process for the scale-out tests and ``bench/scale.py``.

Usage: python tests/_scale_proc.py ROLES WORKFLOWS READY_FILE
(ROLES: comma-separated receiver,scheduler,worker; WORKFLOWS: comma-separated names of
``WORKFLOWS`` below.) The store is ``CLOSEGUARD_STORE_URL``; Close is the served simulator
at ``CG_BASE_URL`` with key ``CG_API_KEY``. Writes the receiver's URL (or ``ready``) to
READY_FILE once started; stops gracefully on SIGTERM. ``CG_CONCURRENCY`` (lanes),
``CG_LEASE`` (seconds), ``CG_CALLS`` (Close calls per ``scale-call`` run),
``CG_NO_SHARED_BUDGET`` (each process paces alone).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from closeguard.agent.runtime import open_store_checkpointer
from closeguard.guardrails import Policy
from closeguard.store import Store
from closeguard.workflows.definition import Context, EventTrigger, ScheduleTrigger, Workflow
from closeguard.workflows.runtime import Runtime, RuntimeConfig

POLICY = Policy.from_dict({"name": "scale", "grants": {"*": "read"}})
_engines: list[Engine] = []


def _engine() -> Engine:
    if not _engines:
        url = os.environ["CLOSEGUARD_STORE_URL"]
        _engines.append(create_engine(url.replace("postgresql://", "postgresql+psycopg://")))
    return _engines[0]


def _insert(run_id: str, kind: str, lead: str | None, n: int | None, tick: str | None) -> None:
    with _engine().begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scale_log (run_id, kind, lead, n, tick, pid) "
                "VALUES (:r, :k, :l, :n, :t, :p)"
            ),
            {"r": run_id, "k": kind, "l": lead, "n": n, "t": tick, "p": os.getpid()},
        )


def _logged(run_id: str) -> bool:
    with _engine().connect() as conn:
        found = conn.execute(text("SELECT 1 FROM scale_log WHERE run_id = :r"), {"r": run_id})
        return found.first() is not None


async def _log_once(ctx: Context, kind: str, lead: Any, n: Any, tick: str | None) -> None:
    async def write() -> Any:
        await asyncio.to_thread(_insert, ctx.run_id, kind, lead, n, tick)
        return {"logged": True}

    async def find() -> Any:
        return {"logged": True} if await asyncio.to_thread(_logged, ctx.run_id) else None

    await ctx.effect("log", write, find=find)


async def log_event(ctx: Context) -> None:
    # CG_HOLD: seconds a run holds its claim before logging, so that a test's SIGKILL
    # finds one in flight.
    await asyncio.sleep(float(os.environ.get("CG_HOLD", "0")))
    await _log_once(ctx, "event", ctx.event_data["lead_id"], ctx.event_data["n"], None)


async def log_tick(ctx: Context) -> None:
    assert ctx.tick is not None
    await _log_once(ctx, "tick", None, None, ctx.tick.isoformat())


async def call_close(ctx: Context) -> None:
    for _ in range(int(os.environ.get("CG_CALLS", "1"))):
        await ctx.client.request("GET", "/me/")


WORKFLOWS = {
    "scale-log": Workflow("scale-log", EventTrigger("lead", "updated"), POLICY, (log_event,)),
    "scale-tick": Workflow(
        "scale-tick", ScheduleTrigger(every=timedelta(seconds=1)), POLICY, (log_tick,)
    ),
    "scale-call": Workflow("scale-call", EventTrigger("lead", "updated"), POLICY, (call_close,)),
}


async def main(roles: str, names: str, ready: Path) -> None:
    store = Store(os.environ["CLOSEGUARD_STORE_URL"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    lease = float(os.environ.get("CG_LEASE", "3"))
    config = RuntimeConfig(
        roles=frozenset(roles.split(",")),  # type: ignore[arg-type]
        listen=("127.0.0.1", 0),
        catchup=False,
        concurrency=int(os.environ.get("CG_CONCURRENCY", "4")),
        lease=lease,
        grace=2.0,
        poll=0.25,
        approvals_every=5.0,
        shared_budget=not os.environ.get("CG_NO_SHARED_BUDGET"),
    )
    async with open_store_checkpointer(store) as saver:
        runtime = Runtime(
            [WORKFLOWS[n] for n in names.split(",")],
            store=store,
            checkpointer=saver,
            api_key=os.environ.get("CG_API_KEY", "unused"),
            base_url=os.environ.get("CG_BASE_URL", "http://127.0.0.1:9/api/v1"),
            config=config,
        )
        task = asyncio.create_task(runtime.run(stop))
        await runtime.ready.wait()
        await asyncio.to_thread(ready.write_text, runtime.receiver_url or "ready")
        await task
    store.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
