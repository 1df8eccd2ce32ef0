"""The receiver process of the receiver-kill drill: ``closeguard run``'s receiver role
only, on a given port, for a stored subscription signed with a known key.

Usage: python -m closeguard.drills._receiver STORE_URL PORT
"""

from __future__ import annotations

import asyncio
import sys

from langgraph.checkpoint.memory import InMemorySaver

from closeguard.store import Store
from closeguard.workflows.definition import EventTrigger, Workflow
from closeguard.workflows.runtime import Runtime, RuntimeConfig


async def _nothing(ctx: object) -> None:
    return None


WORKFLOW = Workflow("drill-intake", EventTrigger("lead", "created"), "read-only", (_nothing,))


async def main(store_url: str, port: int) -> None:
    config = RuntimeConfig(roles=frozenset({"receiver"}), listen=("127.0.0.1", port), catchup=False)
    runtime = Runtime(
        [WORKFLOW],
        store=Store(store_url),
        checkpointer=InMemorySaver(),
        api_key="unused",
        base_url="http://127.0.0.1:9/api/v1",
        config=config,
    )
    await runtime.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
