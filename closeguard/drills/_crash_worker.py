"""A worker process for the crash drill: drains the queue of ``drill-crash`` runs, each
one journaled task on its lead, until no run is left; the drill SIGKILLs it at random.

Usage: python -m closeguard.drills._crash_worker STORE_URL BASE_URL API_KEY FOLDER
(``FOLDER/ready`` is written once the worker runs; checkpoints live in FOLDER).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from closeguard.agent.runtime import open_checkpointer
from closeguard.guardrails import Policy
from closeguard.store import Store
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.runtime import Runtime, RuntimeConfig

POLICY = Policy.from_dict({"name": "drill-crash", "grants": {"task": "write", "lead": "read"}})
UNFINISHED = ("queued", "running")


async def create_task(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    text = f"drill {ctx.run_id}"

    async def write() -> Any:
        return await ctx.client.tasks.create({"lead_id": lead_id, "text": text})

    async def find() -> Any:
        async for task in ctx.client.tasks.iter(lead_id=lead_id):
            if task.text == text:
                return task
        return None

    ctx.state["task_id"] = (await ctx.effect("task", write, find=find))["id"]


async def check(ctx: Context) -> None:
    await ctx.client.tasks.get(ctx.state["task_id"])
    ctx.state["checked"] = True


WORKFLOW = Workflow("drill-crash", EventTrigger("lead", "created"), POLICY, (create_task, check))


async def main(store_url: str, base_url: str, api_key: str, folder: Path) -> None:
    store = Store(store_url)
    config = RuntimeConfig(roles=frozenset({"worker"}), lease=1.0, poll=0.05, grace=1.0)
    async with open_checkpointer(folder / "checkpoints.db") as saver:
        runtime = Runtime(
            [WORKFLOW],
            store=store,
            checkpointer=saver,
            api_key=api_key,
            base_url=base_url,
            config=config,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        (folder / "ready").write_text("ready")
        while True:
            runs = await runtime.inbox.queue.list(limit=10_000)
            if not any(r.status in UNFINISHED for r in runs):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
