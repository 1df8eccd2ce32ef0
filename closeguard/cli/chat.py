"""``closeguard chat``: talk to the agent at the terminal, with approvals asked in line.

The reply streams; each tool call is shown with the guard's decision; a call that needs a
person is asked at the prompt (approve / edit / reject, or Enter to take the answer given
with ``closeguard approvals approve ID`` elsewhere). Threads are checkpointed in SQLite
beside the store, so ``--thread ID`` resumes one after a restart. Without a Close key the
agent works on an embedded simulated organization, saved beside the store between runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Interrupt

from closeguard.agent import (
    SYSTEM_NAME,
    ModelError,
    build_agent,
    checkpoint_path,
    data_dir,
    list_threads,
    new_thread_id,
    open_checkpointer,
    pending_interrupts,
    resolve_model,
    thread_config,
)
from closeguard.cli._common import fail
from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.store import default_store
from closeguard.tools import CloseClient, Settings

__all__ = ["Connection", "chat", "connect"]

WORLD_FILE = "chat-world.json"
EXIT_WAITING = 3
"""``--once`` exit code when the answer waits for an approval."""


@dataclass
class Connection:
    """A guarded client, and the embedded simulator behind it when there is no Close key."""

    client: CloseClient
    simulator: Simulator | None
    world_file: Path | None

    @property
    def description(self) -> str:
        if self.simulator is None:
            return f"Close at {self.client.base_url}"
        return f"the embedded simulator (no CLOSE_API_KEY set; world kept in {self.world_file})"

    async def aclose(self) -> None:
        if self.simulator is not None and self.world_file is not None:
            self.simulator.save(self.world_file)
        await self.client.aclose()


def connect(
    policy: Guarded, *, actor: str, settings: Settings | None = None, seed: int = 7, leads: int = 25
) -> Connection:
    """A client for Close when a key is set, else for an embedded simulated organization."""
    settings = settings or Settings()
    if settings.close_api_key is not None or settings.close_oauth_access_token is not None:
        return Connection(CloseClient(settings=settings, policy=policy, actor=actor), None, None)
    world = data_dir(settings.store_url) / WORLD_FILE
    sim = Simulator.load(world) if world.exists() else Simulator(seed=seed, leads=leads)
    return Connection(sim.client(policy=policy, actor=actor), sim, world)


class _Printer:
    """Writes the conversation: the answer to stdout, the rest to stdout or stderr."""

    def __init__(self, once: bool) -> None:
        self.once = once
        self.streaming = False

    def info(self, text: str) -> None:
        self.end_stream()
        typer.echo(text, err=self.once)

    def token(self, text: str) -> None:
        if not self.streaming:
            self.streaming = True
            if not self.once:
                typer.echo("agent> ", nl=False)
        sys.stdout.write(text)
        sys.stdout.flush()

    def end_stream(self) -> None:
        if self.streaming:
            self.streaming = False
            typer.echo("")


def _short(args: Any, limit: int = 160) -> str:
    text = json.dumps(args, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_reviews(out: _Printer, update: dict[str, Any], run: str) -> None:
    """One line per reviewed call; ``run`` names a call that goes ahead (allowed by the
    policy in a model turn's review, approved by a person when asked)."""
    for review in (update.get("reviews") or {}).values():
        status = review.get("status")
        label = {
            "run": run,
            "pending": f"needs approval ({review.get('approval_id')})",
            "rejected": "rejected",
            "refused": "refused",
        }.get(status, status)
        detail = f": {review.get('message')}" if status in ("refused", "rejected") else ""
        out.info(f"  tool {review.get('tool')} {_short(review.get('args'))} -> {label}{detail}")


def _show_update(out: _Printer, node: str, update: Any) -> None:
    if not isinstance(update, dict):
        return
    if node == "model":
        for msg in update.get("messages") or []:
            if isinstance(msg, AIMessage) and msg.name == SYSTEM_NAME:
                out.info(str(msg.content))
            elif isinstance(msg, AIMessage) and msg.content and not out.streaming:
                out.token(str(msg.content))
        out.end_stream()
        _show_reviews(out, update, "allowed")
    elif node in ("review", "ask"):
        _show_reviews(out, update, "allowed" if node == "review" else "approved")
    elif node == "tools":
        for msg in update.get("messages") or []:
            if isinstance(msg, ToolMessage):
                state = "error" if msg.status == "error" else f"{len(str(msg.content))} chars"
                out.info(f"  result {msg.name}: {state}")
            elif isinstance(msg, AIMessage):
                out.info(str(msg.content))


async def _stream(
    agent: Any, config: RunnableConfig, payload: Any, out: _Printer
) -> list[Interrupt]:
    """Run until the graph ends or waits; the pending interrupts."""
    async for mode, chunk in agent.astream(payload, config, stream_mode=["messages", "updates"]):
        if mode == "messages":
            msg, meta = chunk
            if (
                meta.get("langgraph_node") == "model"
                and isinstance(msg, AIMessageChunk)
                and isinstance(msg.content, str)
                and msg.content
            ):
                out.token(msg.content)
        elif mode == "updates":
            for node, update in chunk.items():
                if node != "__interrupt__":
                    _show_update(out, node, update)
    out.end_stream()
    return await pending_interrupts(agent, config)


def _read(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        raise typer.Exit(0) from None


def _ask(item: Interrupt) -> Any:
    """One approval, asked at the terminal."""
    v = item.value
    typer.echo(
        f"\n  approval {v['approval_id']}: {v['tool']} ({v['access']}) {v['method']} {v['path']}"
    )
    typer.echo(f"    args: {_short(v['args'], 400)}")
    typer.echo(f"    why:  {v['reason']}")
    if v.get("error"):
        typer.echo(f"    note: {v['error']}")
    while True:
        choice = (
            _read("  [a]pprove, [e]dit, [r]eject, or Enter to check the approval store: ")
            .strip()
            .lower()
        )
        if choice in ("a", "approve", "y", "yes"):
            return "approve"
        if choice in ("", "c", "check"):
            return "check"
        if choice in ("r", "reject", "n", "no"):
            note = _read("  message for the agent (optional): ").strip()
            return {"action": "reject", "message": note} if note else "reject"
        if choice in ("e", "edit"):
            raw = _read("  new arguments as JSON: ")
            try:
                return {"action": "edit", "args": json.loads(raw)}
            except ValueError as exc:
                typer.echo(f"  not JSON: {exc}")
                continue
        typer.echo("  answer a, e, r or press Enter")


async def _run(
    agent: Any, config: RunnableConfig, payload: Any, out: _Printer, thread_id: str
) -> int:
    """One user turn, approvals included; the exit code."""
    while True:
        waiting = (
            await _stream(agent, config, payload, out)
            if payload is not None
            else (await pending_interrupts(agent, config))
        )
        if not waiting:
            return 0
        if out.once:
            for item in waiting:
                approval = item.value.get("approval_id")
                out.info(
                    f"waiting for approval {approval} ({item.value.get('tool')}): "
                    f"closeguard approvals approve {approval} --as NAME, then "
                    f"closeguard chat --thread {thread_id}"
                )
            return EXIT_WAITING
        payload = Command(resume={item.id: _ask(item) for item in waiting})


async def _session(
    model: BaseChatModel, guarded: Guarded, once: str | None, thread_id: str, model_name: str
) -> int:
    out = _Printer(once is not None)
    conn = connect(guarded, actor=f"chat:{thread_id}")
    try:
        async with open_checkpointer(checkpoint_path()) as saver:
            agent = build_agent(model, guarded, conn.client, checkpointer=saver)
            config = thread_config(thread_id)
            out.info(
                f"closeguard chat: policy {guarded.policy.name}, model {model_name}, "
                f"thread {thread_id}"
            )
            out.info(f"Close: {conn.description}")
            if await pending_interrupts(agent, config):
                resume: Any = None
                if out.once:
                    items = await pending_interrupts(agent, config)
                    resume = Command(resume={i.id: "check" for i in items})
                code = await _run(agent, config, resume, out, thread_id)
                if code:
                    return code
            if once is not None:
                return await _run(agent, config, {"messages": [("user", once)]}, out, thread_id)
            out.info("Type a question; /exit or Ctrl-D to leave.")
            while True:
                line = _read("you> ").strip()
                if line in ("/exit", "/quit"):
                    return 0
                if line:
                    await _run(agent, config, {"messages": [("user", line)]}, out, thread_id)
    finally:
        await conn.aclose()


def _threads() -> None:
    found = list_threads(checkpoint_path())
    if not found:
        typer.echo("no chat threads yet")
    for t in found:
        typer.echo(f"{t.thread_id}  ({t.checkpoints} checkpoints)")


def chat(
    once: Annotated[
        str | None,
        typer.Option(
            "--once", metavar="QUESTION", help="Ask one question, print the answer, exit."
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", "-p", metavar="NAME|FILE", help="The agent's policy.")
    ] = "sales-rep",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="PROVIDER:MODEL",
            help="openai:..., anthropic:..., ollama:... or scripted:FILE "
            "(default CLOSEGUARD_MODEL).",
        ),
    ] = None,
    thread: Annotated[
        str | None, typer.Option("--thread", "-t", metavar="ID", help="Resume this thread.")
    ] = None,
    threads: Annotated[bool, typer.Option("--threads", help="List saved threads.")] = False,
) -> None:
    """Chat with the agent over your Close data; risky calls wait for your yes."""
    if threads:
        _threads()
        return
    loaded = Policy.load(policy)
    chat_model = resolve_model(model)
    guarded = Guarded(loaded, store=default_store())
    name = model or Settings().model or ""
    try:
        code = asyncio.run(_session(chat_model, guarded, once, thread or new_thread_id(), name))
    except ModelError as exc:
        raise fail(str(exc)) from None
    if code:
        raise typer.Exit(code)
