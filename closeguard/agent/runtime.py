"""Running the agent: checkpoints next to the store, threads, and answering approval
interrupts safely.

``resume_command`` is the one way answers go back into a thread: it refuses interrupt ids
that are not pending (naming the ones that are) instead of letting LangGraph fail later,
and the ids it does not get stay pending, to be asked again; nothing is left stuck.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Interrupt
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from closeguard.agent.review import AnswerError
from closeguard.store import Store
from closeguard.store.walcheck import WalCheckpoints
from closeguard.tools import Settings
from closeguard.tools.settings import default_data_dir

__all__ = [
    "LoopSqliteSaver",
    "ThreadInfo",
    "checkpoint_path",
    "data_dir",
    "list_threads",
    "new_thread_id",
    "open_checkpointer",
    "open_store_checkpointer",
    "pending_interrupts",
    "resume_command",
    "thread_config",
]

CHECKPOINT_FILE = "checkpoints.db"


def data_dir(store_url: str | None = None) -> Path:
    """The folder of the SQLite store (checkpoints live beside it), else the data dir."""
    url = make_url(store_url or Settings().store_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).expanduser().resolve().parent
    return default_data_dir()


def checkpoint_path(store_url: str | None = None) -> Path:
    return data_dir(store_url) / CHECKPOINT_FILE


class LoopSqliteSaver(SqliteSaver):
    """``langgraph-checkpoint-sqlite``'s ``SqliteSaver`` with its async methods run in the
    event loop's thread.

    A checkpoint write in WAL mode takes well under a millisecond; ``AsyncSqliteSaver``
    hands every statement to a worker thread instead, and on a busy machine each handoff
    costs about a millisecond of GIL switching, several per step (``bench/agent.py``).
    """

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)


@asynccontextmanager
async def open_checkpointer(path: Path | None = None) -> AsyncIterator[LoopSqliteSaver]:
    """LangGraph's SQLite checkpointer on ``path`` (default: beside the store), WAL mode,
    its log copied back into the file on a thread of its own (``WalCheckpoints``: a commit
    on the event loop never runs the checkpoint and its fsync)."""
    target = path or checkpoint_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(str(target), check_same_thread=False)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        WalCheckpoints.hand_over(conn)
        checkpoints = WalCheckpoints(target)
        try:
            yield LoopSqliteSaver(conn)
        finally:
            checkpoints.close()


_TRY_LOCK = "SELECT pg_try_advisory_lock(%s) AS ok"
"""Polled, not waited on: LangGraph's setup creates indexes ``CONCURRENTLY``, which waits
for every open transaction, a blocked lock request included (a deadlock)."""


@asynccontextmanager
async def open_store_checkpointer(
    store: Store, path: Path | None = None, *, connections: int = 8
) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """The checkpointer that goes with ``store``: on PostgreSQL, LangGraph's
    ``AsyncPostgresSaver`` in the same database (and schema), so a run checkpointed on one
    machine continues on another; else the SQLite file beside the store (``path``)."""
    if store.dialect != "postgresql":
        async with open_checkpointer(path) as saver:
            yield saver
        return
    conninfo = store.url.set(drivername="postgresql").render_as_string(hide_password=False)
    options = {"options": f"-c search_path={store.schema},public"} if store.schema else {}
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=connections,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, **options},
    )
    await pool.open()
    try:
        async with pool.connection() as conn:
            key = zlib.crc32(f"closeguard-checkpoints:{store.schema or ''}".encode())
            while not (await (await conn.execute(_TRY_LOCK, (key,))).fetchone() or {})["ok"]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            try:
                await AsyncPostgresSaver(conn).setup()
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        yield AsyncPostgresSaver(pool)
    finally:
        await pool.close()


def new_thread_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def thread_config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 100}


async def pending_interrupts(
    agent: CompiledStateGraph[Any, Any, Any, Any], config: RunnableConfig
) -> list[Interrupt]:
    """The approval interrupts this thread is waiting on."""
    state = await agent.aget_state(config)
    return list(state.interrupts)


async def resume_command(
    agent: CompiledStateGraph[Any, Any, Any, Any],
    config: RunnableConfig,
    answers: Mapping[str, Any],
) -> Command[Any]:
    """``Command(resume={interrupt_id: answer})``, checked against what is pending."""
    waiting = {i.id for i in await pending_interrupts(agent, config)}
    if not waiting:
        raise AnswerError("this thread is not waiting for any approval")
    if not isinstance(answers, Mapping) or not answers:
        raise AnswerError(f"answer by interrupt id; pending: {', '.join(sorted(waiting))}")
    unknown = set(answers) - waiting
    if unknown:
        raise AnswerError(
            f"not pending here: {', '.join(sorted(unknown))}; pending: {', '.join(sorted(waiting))}"
        )
    return Command(resume=dict(answers))


@dataclass(frozen=True)
class ThreadInfo:
    thread_id: str
    checkpoints: int
    last_checkpoint: str


def list_threads(path: Path | None = None) -> list[ThreadInfo]:
    """Threads saved in the checkpoint file, most recent first."""
    target = path or checkpoint_path()
    if not target.exists():
        return []
    with sqlite3.connect(target) as conn:
        try:
            rows = conn.execute(
                "SELECT thread_id, count(*), max(checkpoint_id) FROM checkpoints "
                "WHERE checkpoint_ns = '' GROUP BY thread_id ORDER BY max(checkpoint_id) DESC"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [ThreadInfo(str(t), int(n), str(last)) for t, n, last in rows]
