"""A worker process for tests/test_wf_runtime_crash.py: runs one queued run, and on its
first life signals and blocks at the chosen point so the test can SIGKILL it.

Usage: python _wf_crash_worker.py STORE_URL BASE_URL API_KEY MARKER MODE
MODE: ``in-write`` (the task is created in Close, its journal entry has only the intent)
or ``next-step`` (step one is done and journaled, step two blocks).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from closeguard.agent.runtime import open_checkpointer
from closeguard.guardrails import Policy
from closeguard.store import Store
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.runtime import Runtime, RuntimeConfig

FIRST_LIFE = not os.environ.get("CG_RESTARTED")
MARKER = Path("marker")
MODE = "in-write"
POLICY = Policy.from_dict({"name": "crash-test", "grants": {"task": "write", "lead": "read"}})


async def block(what: str) -> None:
    MARKER.write_text(what)
    await asyncio.Event().wait()


async def create_task(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    text = f"crash-test {ctx.run_id}"

    async def write() -> Any:
        task = await ctx.client.tasks.create({"lead_id": lead_id, "text": text})
        if FIRST_LIFE and MODE == "in-write":
            await block(task.id)
        return task

    async def find() -> Any:
        async for task in ctx.client.tasks.iter(lead_id=lead_id):
            if task.text == text:
                return task
        return None

    task = await ctx.effect("task", write, find=find)
    ctx.state["task_id"] = task["id"]


async def after(ctx: Context) -> None:
    if FIRST_LIFE and MODE == "next-step":
        await block(ctx.state["task_id"])
    ctx.state["after"] = True


WORKFLOW = Workflow("crash-test", EventTrigger("lead", "created"), POLICY, (create_task, after))


async def main(store_url: str, base_url: str, api_key: str) -> None:
    store = Store(store_url)
    config = RuntimeConfig(roles=frozenset({"worker"}), lease=1.0, poll=0.05, grace=1.0)
    async with open_checkpointer(MARKER.with_suffix(".checkpoints.db")) as saver:
        runtime = Runtime(
            [WORKFLOW],
            store=store,
            checkpointer=saver,
            api_key=api_key,
            base_url=base_url,
            config=config,
        )
        stop, completed = asyncio.Event(), asyncio.Event()
        runtime.feed.listeners.append(
            lambda activity: completed.set() if activity.status == "completed" else None
        )
        task = asyncio.create_task(runtime.run(stop))
        await completed.wait()
        stop.set()
        await task


if __name__ == "__main__":
    MARKER, MODE = Path(sys.argv[4]), sys.argv[5]
    asyncio.run(main(*sys.argv[1:4]))
