"""The checkpoints a workflow run keeps: only the ones a later execution can use.

LangGraph saves the input, every superstep and each task's writes as it goes. A run that
completes needs none of them (its outcome and state are in the run's record); a run that
stops (waits for an approval, fails, is deferred or released) needs its last checkpoint and
that checkpoint's pending writes, to resume in the step that stopped. ``RunCheckpoints``
wraps the real saver: while a run executes (``hold``), the saves of its thread stay in
memory, and when the execution ends the executor keeps them (``release(keep=True)``: the
last checkpoint and its writes go to the saver) or lets them go. So a run that finishes
without waiting writes no checkpoint at all, and one that stops writes one.

A run killed mid-execution (SIGKILL, power) loses what was held: its next execution starts
from the last checkpoint kept before (or from the first step), and the effect journal
replays the writes already made, so none is lost or doubled. A ``durable`` run (a workflow
that asks a model, whose answer is costly and differs each time) also writes each step's
checkpoint as it is made (LangGraph's ``sync`` durability), but never the input's nor the
start's, so at most one per step.

Threads that are not held (an agent step's own thread) go straight to the saver.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    copy_checkpoint,
)

__all__ = ["Held", "RunCheckpoints"]

_UNSAVED_KEPT = 4096
"""How many runs known to have nothing saved are remembered (``forget`` skips them)."""


@dataclass
class _Put:
    config: RunnableConfig
    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    versions: ChannelVersions
    written: bool


@dataclass
class _Writes:
    config: RunnableConfig
    writes: Sequence[tuple[str, Any]]
    task_id: str
    task_path: str


@dataclass
class Held:
    """One run's thread while it executes: what the saver had, and what LangGraph saved since."""

    thread_id: str
    durable: bool
    loaded: CheckpointTuple | None = None
    last: _Put | None = None
    writes: list[_Writes] = field(default_factory=list)
    saved: bool = False
    """The saver holds something of this thread (from before, or written since)."""

    def latest(self) -> CheckpointTuple | None:
        """The thread's latest checkpoint as the saver would give it, or None."""
        if self.last is None:
            if self.loaded is None:
                return None
            found = self.loaded
            return found._replace(
                checkpoint=copy_checkpoint(found.checkpoint),
                pending_writes=list(found.pending_writes or ()),
            )
        put = self.last
        parent = put.config["configurable"].get("checkpoint_id")
        return CheckpointTuple(
            config=_config_of(self.thread_id, put.checkpoint["id"]),
            checkpoint=copy_checkpoint(put.checkpoint),
            metadata=put.metadata,
            parent_config=_config_of(self.thread_id, parent) if parent else None,
            pending_writes=[
                (held.task_id, channel, value)
                for held in self.writes
                for channel, value in held.writes
            ],
        )


def _config_of(thread_id: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": "",
            "checkpoint_id": checkpoint_id,
        }
    }


def _thread(config: RunnableConfig | None) -> tuple[str | None, str, str | None]:
    conf = (config or {}).get("configurable") or {}
    thread = conf.get("thread_id")
    return (
        None if thread is None else str(thread),
        conf.get("checkpoint_ns") or "",
        conf.get("checkpoint_id"),
    )


class RunCheckpoints(BaseCheckpointSaver[Any]):
    """``inner`` (any LangGraph saver) with held threads (see the module doc)."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self._held: dict[str, Held] = {}
        self._unsaved: OrderedDict[str, None] = OrderedDict()

    @property
    def config_specs(self) -> list[Any]:
        return self.inner.config_specs

    def get_next_version(self, current: Any, channel: None) -> Any:
        return self.inner.get_next_version(current, channel)

    async def hold(self, thread_id: str, *, durable: bool = False) -> Held:
        """Start holding ``thread_id``'s saves; reads the saver's latest checkpoint once."""
        held = Held(thread_id, durable)
        held.loaded = await self.inner.aget_tuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        )
        held.saved = held.loaded is not None
        self._held[thread_id] = held
        return held

    async def release(self, held: Held, *, keep: bool) -> None:
        """Stop holding: with ``keep``, write the last checkpoint and its pending writes."""
        if self._held.get(held.thread_id) is held:
            del self._held[held.thread_id]
        if keep:
            last = held.last
            if last is not None and not last.written:
                await self.inner.aput(last.config, last.checkpoint, last.metadata, last.versions)
                last.written = held.saved = True
            for writes in held.writes:
                await self.inner.aput_writes(
                    writes.config, writes.writes, writes.task_id, writes.task_path
                )
                held.saved = True
        if held.saved:
            self._unsaved.pop(held.thread_id, None)
        else:
            self._unsaved[held.thread_id] = None
            while len(self._unsaved) > _UNSAVED_KEPT:
                self._unsaved.popitem(last=False)

    def unsaved(self, thread_id: str) -> bool:
        """The run's last execution here ended with nothing of its thread in the saver."""
        return thread_id in self._unsaved and thread_id not in self._held

    def _holding(self, config: RunnableConfig | None) -> Held | None:
        thread, namespace, _ = _thread(config)
        if thread is None or namespace:
            return None
        return self._held.get(thread)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        held = self._holding(config)
        wanted = _thread(config)[2]
        if held is not None:
            latest = held.latest()
            if wanted is None or (latest is not None and latest.checkpoint["id"] == wanted):
                return latest
        return await self.inner.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        held = self._holding(config)
        if held is None:
            return await self.inner.aput(config, checkpoint, metadata, new_versions)
        written = held.durable and int(metadata.get("step", -1)) >= 1
        if written:
            await self.inner.aput(config, checkpoint, metadata, new_versions)
            held.saved = True
        held.last = _Put(config, checkpoint, metadata, new_versions, written)
        held.writes = [w for w in held.writes if _thread(w.config)[2] == checkpoint["id"]]
        return _config_of(held.thread_id, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        held = self._holding(config)
        if held is None:
            await self.inner.aput_writes(config, writes, task_id, task_path)
            return
        held.writes.append(_Writes(config, list(writes), task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        self._unsaved.pop(str(thread_id), None)
        await self.inner.adelete_thread(thread_id)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.inner.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._unsaved.pop(str(thread_id), None)
        self.inner.delete_thread(thread_id)
