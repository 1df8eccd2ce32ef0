"""Shared set-up for the agent tests: a simulated org, a guarded client, a compiled agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.agent import Limits, build_agent, thread_config
from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools import CloseClient

TODAY = date(2026, 11, 27)


@dataclass
class Rig:
    sim: Simulator
    client: CloseClient
    agent: Any
    model: BaseChatModel
    config: RunnableConfig

    async def ask(self, text: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.agent.ainvoke(
            {"messages": [("user", text)]}, self.config
        )
        return result

    async def resume(self, command: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.agent.ainvoke(command, self.config)
        return result

    def lead_ids(self) -> list[str]:
        return list(self.sim.state["leads"])


def policy_of(source: str) -> Policy:
    return Policy.from_yaml(source) if "\n" in source else Policy.load(source)


@asynccontextmanager
async def rig(
    store: Store,
    policy: str,
    model: BaseChatModel,
    *,
    sim: Simulator | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    limits: Limits | None = None,
    thread: str = "t-test",
) -> AsyncIterator[Rig]:
    sim = sim or Simulator(seed=3, leads=6)
    guarded = Guarded(policy_of(policy), store=store)
    async with sim.client(policy=guarded, actor="agent-test") as client:
        agent = build_agent(
            model,
            guarded,
            client,
            checkpointer=checkpointer or InMemorySaver(),
            limits=limits,
            approver="tester",
            today=lambda: TODAY,
        )
        yield Rig(sim, client, agent, model, thread_config(thread))


def tool_messages(result: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


MERGE_POLICY = """\
name: merger
grants: {"*": destructive}
approve: [lead.merge]
"""

TASKS_POLICY = """\
name: task-approver
grants: {"*": read, task: write, lead: write}
approve: [task.create, lead.update]
"""
