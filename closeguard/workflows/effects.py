"""The effect journal behind ``Context.effect``: each write at most once per run and key.

Before a write is sent its intent is committed; after it, its JSON result. With ``defer``
(the worker's), the result of a write that has a ``find`` is committed with the run's next
store work instead, one commit for both: its next journaled write, the end of its step
(before the step's checkpoint: ``flush``), or the worker recording the run's outcome; a
crash in between leaves only the intent, which ``find`` resolves. A run retried
after a crash finds either the result (returned, nothing is called), or only the intent
(the process died mid-call: ``find`` reads Close back, and only if it finds nothing is the
write made again), or nothing (the write is made). Store access never waits in the event
loop: the journal's own writes are store trips (``Store.trip``).

When the journal knows a run's rows (read in the transaction that claimed it: ``know``), a
write it has no row for need not take a trip of its own to record its intent: the intent
waits (``PENDING_INTENT``) for the first call the write sends that is not a read, and the
guard's transport commits it, with the results waiting and the call's quota charge, in
that call's transaction, before the call leaves. Only for a write whose side effects go
through the guard: one a workflow (``scope``) made under this key before in this process
and that then sent such a call through the guard (a write that never did, one into another
database for instance, always has its intent committed first). Such a write that sends
nothing this time needs no intent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Connection

from closeguard.store import Store
from closeguard.store.effects import PENDING_INTENT, AlreadyJournaled, EffectRow, EffectRows
from closeguard.workflows.jsonvalue import to_json
from closeguard.workflows.turns import RunTurns

__all__ = ["EffectJournal", "to_json"]


class _Intent:
    """A write's intent left for the guard to commit (``PendingIntent``)."""

    def __init__(self, journal: EffectJournal, run_id: str, key: str) -> None:
        self.journal = journal
        self.run_id = run_id
        self.key = key
        self.committed = False
        self.over = False
        self.sent = False
        """A call that is not a read went through the guard while the write ran."""
        self.pending = True
        """The intent is the guard's to commit (False: committed already; the write is
        only watched for a call through the guard)."""
        self._results: list[tuple[str, str, Any]] = []

    def open(self) -> bool:
        self.sent = True
        if self.committed or self.over or not self.pending:
            return False
        self._results = self.journal.take(self.run_id)
        return True

    def commit_in(self, conn: Connection) -> None:
        rows = self.journal.rows
        rows.done_in(conn, self._results)
        if not rows.new_intent_in(conn, self.run_id, self.key):
            raise AlreadyJournaled(f"{self.run_id}/{self.key}")

    def settle(self, committed: bool) -> None:
        results, self._results = self._results, []
        if committed:
            self.committed = True
        elif results:
            self.journal._pending.setdefault(self.run_id, [])[:0] = results


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
        self._known: dict[str, dict[str, EffectRow]] = {}
        self._guarded: set[tuple[str, str]] = set()
        """``(scope, key)`` of writes seen sending a call through the guard."""
        self.turns = RunTurns(store)
        """Rotation turns the worker's claims took ahead for their runs (``ctx.turn``)."""

    def know(self, run_id: str, rows: list[EffectRow]) -> None:
        """The run's rows as its claim read them: writes with none record their intent
        with the first call they send (see the module doc). Only for a run this process
        holds the lease of."""
        self._known[run_id] = {row.key: row for row in rows}

    def forget(self, run_id: str) -> None:
        self._known.pop(run_id, None)

    def take(self, run_id: str) -> list[tuple[str, str, Any]]:
        """The run's results not yet committed, ``(run_id, key, result)``, now the
        caller's to commit (``EffectRows.done_in``)."""
        return self._pending.pop(run_id, [])

    async def flush(self, run_id: str) -> None:
        """Commit the run's results not yet committed."""
        pending = self.take(run_id)
        if pending:
            await self.store.trip(self.rows.done_in_own, pending)

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
        scope: str | None = None,
    ) -> Any:
        """The write's JSON result, made at most once for ``(run_id, key)``; ``scope``:
        the workflow making it (see the module doc).

        The result is always the JSON form (a pydantic model comes back as a dict), the
        same on the first run and on a replay. An intent without a result and without
        ``find`` cannot be checked: the write is made again (at least once).
        """
        known = self._known.get(run_id)
        ahead = known is not None and key not in known and (scope, key) in self._guarded
        found: EffectRow | None
        if known is not None and key in known:
            found = known[key]
        elif not ahead:
            found = await self.store.trip(self.rows.begin, run_id, key, self.take(run_id))
        else:
            try:
                result = await self._first(run_id, key, write, scope)
            except AlreadyJournaled:
                found = await self.store.run(self.rows.get, run_id, key)
            else:
                return await self._made(run_id, key, result, find)
        if found is not None and found.status == "done":
            return found.result
        if found is not None and find is not None:
            existing = await find()
            if existing is not None:
                result = to_json(existing)
                await self._done(run_id, key, result, find)
                return result
        result = await self._first(run_id, key, write, scope, pending=False)
        return await self._made(run_id, key, result, find)

    async def _made(self, run_id: str, key: str, result: Any, find: object) -> Any:
        """A write just made: its result recorded and counted; returns the result."""
        await self._done(run_id, key, result, find)
        self.made[run_id] += 1
        return result

    async def _first(
        self,
        run_id: str,
        key: str,
        write: Callable[[], Awaitable[Any]],
        scope: str | None,
        *,
        pending: bool = True,
    ) -> Any:
        """Make the write (its JSON result), watching whether it sends a call through the
        guard (then its scope and key are ``_guarded``); ``pending``: its intent is not
        committed yet, the guard commits it with the first call it sends."""
        intent = _Intent(self, run_id, key)
        intent.pending = pending
        token = PENDING_INTENT.set(intent)
        try:
            return to_json(await write())
        finally:
            intent.over = True
            PENDING_INTENT.reset(token)
            if intent.sent and scope is not None:
                self._guarded.add((scope, key))

    async def _done(self, run_id: str, key: str, result: Any, find: object) -> None:
        known = self._known.get(run_id)
        if known is not None:
            known[key] = EffectRow(run_id, key, "done", result, 0.0, 0.0)
        if self.defer and find is not None:
            self._pending.setdefault(run_id, []).append((run_id, key, result))
        else:
            await self.store.trip(self.rows.done, run_id, key, result)
