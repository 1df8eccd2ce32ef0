"""The effect journal behind ``Context.effect``: each write at most once per run and key.

Before a write is sent its intent is committed; after it, its JSON result. With ``defer``
(the worker's), the result of a write that has a ``find`` is committed with the run's next
store work instead, one commit for both: its next journaled write, the end of its step
(before the step's checkpoint: ``flush``), or the worker recording the run's outcome; a
crash in between leaves only the intent, which ``find`` resolves. A run retried
after a crash finds either the result (returned, nothing is called), or only the intent
(the process died mid-call: ``find`` reads Close back, and only if it finds nothing is the
write made again), or nothing (the write is made). Store access runs on the store's thread,
never in the event loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from closeguard.store import Store
from closeguard.store.effects import EffectRow, EffectRows
from closeguard.workflows.jsonvalue import to_json

__all__ = ["EffectJournal", "to_json"]


class EffectJournal:
    """Journaled writes for the runs of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rows = EffectRows(store)
        self.made: Counter[str] = Counter()
        """Writes this process made and journaled, per run: an attempt that made one
        progressed (the executor tells a stuck run from a slow one by it)."""
        self.defer = False
        """Keep results of writes that have a ``find`` until the run's next store work
        (the worker sets it, and commits them with the run's outcome: ``take``)."""
        self._pending: dict[str, list[tuple[str, str, Any]]] = {}

    def take(self, run_id: str) -> list[tuple[str, str, Any]]:
        """The run's results not yet committed, ``(run_id, key, result)``, now the
        caller's to commit (``EffectRows.done_in``)."""
        return self._pending.pop(run_id, [])

    async def flush(self, run_id: str) -> None:
        """Commit the run's results not yet committed."""
        pending = self.take(run_id)
        if pending:
            await self.store.run(self.rows.done_in_own, pending)

    async def get(self, run_id: str, key: str) -> EffectRow | None:
        return await self.store.run(self.rows.get, run_id, key)

    async def for_run(self, run_id: str) -> list[EffectRow]:
        return await self.store.run(self.rows.for_run, run_id)

    async def effect(
        self,
        run_id: str,
        key: str,
        write: Callable[[], Awaitable[Any]],
        *,
        find: Callable[[], Awaitable[Any]] | None = None,
    ) -> Any:
        """The write's JSON result, made at most once for ``(run_id, key)``.

        The result is always the JSON form (a pydantic model comes back as a dict), the
        same on the first run and on a replay. An intent without a result and without
        ``find`` cannot be checked: the write is made again (at least once).
        """
        found = await self.store.run(self.rows.begin, run_id, key, self.take(run_id))
        if found is not None and found.status == "done":
            return found.result
        if found is not None and find is not None:
            existing = await find()
            if existing is not None:
                result = to_json(existing)
                await self._done(run_id, key, result, find)
                return result
        result = to_json(await write())
        await self._done(run_id, key, result, find)
        self.made[run_id] += 1
        return result

    async def _done(self, run_id: str, key: str, result: Any, find: object) -> None:
        if self.defer and find is not None:
            self._pending.setdefault(run_id, []).append((run_id, key, result))
        else:
            await self.store.run(self.rows.done, run_id, key, result)
