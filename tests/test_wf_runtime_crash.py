"""A worker process SIGKILLed mid-run and restarted: no lost and no duplicated effect.

The simulator is served from this test's process; the worker is a real subprocess
(``tests/_wf_crash_worker.py``) sharing the SQLite store and checkpoint file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.store.effects import EffectRows
from closeguard.workflows.inbox import Inbox
from tests._serve import served
from tests._wf_crash_worker import WORKFLOW

SCRIPT = Path(__file__).with_name("_wf_crash_worker.py")


async def start(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args, env=env, cwd=str(SCRIPT.parent.parent)
    )


async def wait_for_file(path: Path, process: asyncio.subprocess.Process) -> None:
    for _ in range(1200):
        if await asyncio.to_thread(path.exists):
            return
        assert process.returncode is None, "the worker exited before reaching the crash point"
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never reached the crash point")


@pytest.mark.parametrize("mode", ["in-write", "next-step"])
async def test_a_killed_worker_restarted_loses_and_repeats_nothing(
    tmp_path: Path, mode: str
) -> None:
    sim = Simulator(seed=11, leads=3)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(store_url)
    inbox = Inbox(store, [WORKFLOW])
    lead_id = next(iter(sim.state["leads"]))
    event = {"id": "ev_crash", "object_type": "lead", "action": "created", "lead_id": lead_id}
    event["data"] = {"id": lead_id}
    assert await inbox.add(event, source="webhook")
    [run] = await inbox.queue.list()
    marker = tmp_path / "marker"
    before = set(sim.state["tasks"])
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)}
    env.pop("CG_RESTARTED", None)
    async with served(sim.app) as base:
        args = [store_url, f"{base}/api/v1", sim.api_key, str(marker), mode]
        first = await start(args, env)
        await wait_for_file(marker, first)
        os.kill(first.pid, signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        created = [t for t in sim.state["tasks"] if t not in before]
        assert created == [marker.read_text()], "the write landed before the kill"
        journal = EffectRows(store).get(run.id, "task")
        assert journal is not None
        assert journal.status == ("intent" if mode == "in-write" else "done")

        second = await start(args, {**env, "CG_RESTARTED": "1"})
        assert await asyncio.wait_for(second.wait(), 90) == 0
    created = [t for t in sim.state["tasks"] if t not in before]
    assert created == [marker.read_text()], "exactly one task, the first life's"
    done = await inbox.queue.get(run.id)
    assert done is not None and done.status == "completed"
    assert done.state == {"task_id": created[0], "after": True}
    journal = EffectRows(store).get(run.id, "task")
    assert journal is not None and journal.status == "done"
    assert journal.result["id"] == created[0]
