"""Quotas: how many calls a run, and a policy per time window, may make.

Per-run counters live in process memory, keyed by policy and run id (a run executes in one
process). Per-window counters live in the store (``quota_counters``), so every worker on the
same store shares them; the check and the increment are one conditional upsert
(``RETURNING`` tells whether it counted), so two workers cannot both take the last unit.
A call takes its per-run units first and gives them back if a window refuses it, so no lock
is held while the store is asked. A logical call is charged once, whatever the number of
attempts (retries share ``call_id``). A call that Close failed (a 5xx, or no answer at all)
gets its per-run units back through ``refund``, so a run retried after a transient failure
is not refused by the units its failed attempt used; its per-window units stay spent, since
those limit the rate of attempts. If such a write did land after all, the retried run's
effect journal reads it back before writing again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from closeguard.guardrails.policy import Counters, Policy
from closeguard.tools.access import Access

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from closeguard.store import Store
    from closeguard.store.quotas import QuotaCounters

__all__ = ["Quotas", "Reserved"]

_MAX_RUNS = 10_000
_MAX_CALL_IDS = 10_000


def _applicable(counters: Counters, endpoint: str, access: Access) -> list[tuple[str, int]]:
    out = []
    if counters.calls is not None:
        out.append(("calls", counters.calls))
    if counters.writes is not None and access != "read":
        out.append(("writes", counters.writes))
    if counters.destructive is not None and access == "destructive":
        out.append(("destructive", counters.destructive))
    limit = counters.per_endpoint.get(endpoint)
    if limit is not None:
        out.append((f"per_endpoint.{endpoint}", limit))
    return out


class Reserved(NamedTuple):
    """Per-run units taken for a call whose per-window limits are still to be charged."""

    counts: Counter[str]
    run: list[tuple[str, int]]
    window: list[tuple[str, int]]


class Quotas:
    """Charges calls against a policy's ``limits``; returns the rule that ran out."""

    _runs: OrderedDict[tuple[str, str], Counter[str]] = OrderedDict()
    _runs_lock = threading.Lock()

    def __init__(
        self, policy: Policy, store: Store | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy
        self.store = store
        self.counters: QuotaCounters | None = None
        if store is not None:
            from closeguard.store.quotas import QuotaCounters

            self.counters = QuotaCounters(store)
        self.clock = clock
        self._charged: OrderedDict[str, Reserved | None] = OrderedDict()
        self._checks: dict[
            tuple[str, str], tuple[list[tuple[str, int]], list[tuple[str, int]]]
        ] = {}
        self.active = not (policy.limits.per_run.empty and policy.limits.per_window.empty)

    def charge(
        self, *, call_id: str, run_id: str, endpoint: str, access: Access, dry_run: bool = False
    ) -> str | None:
        """Count one call; the limit rule it would exceed (nothing counted), else None."""
        step = self.reserve(call_id=call_id, run_id=run_id, endpoint=endpoint, access=access)
        if not isinstance(step, Reserved):
            return step
        try:
            rule = self._charge_window(step.window, dry_run)
        except BaseException:
            self._give_back(step)
            raise
        return self._settle(step, call_id, rule)

    async def acharge(
        self, *, call_id: str, run_id: str, endpoint: str, access: Access, dry_run: bool = False
    ) -> str | None:
        """``charge`` for async callers: a per-window upsert is a store trip
        (``Store.trip``: never a wait on a lock in the event loop)."""
        step = self.reserve(call_id=call_id, run_id=run_id, endpoint=endpoint, access=access)
        if not isinstance(step, Reserved):
            return step
        return await self.acharge_window(step, call_id=call_id, dry_run=dry_run)

    async def acharge_window(
        self,
        step: Reserved | None,
        *,
        call_id: str,
        dry_run: bool,
        before: Callable[[Connection], None] | None = None,
    ) -> str | None:
        """The per-window part of ``acharge`` for a call ``reserve`` left pending (None:
        nothing to charge); ``before``: more store work for the same transaction, done
        first and committed only with the charge (the effect journal's intent)."""
        window = [] if step is None else step.window
        try:
            if self.store is None:
                raise RuntimeError("per_window limits need a store")
            rule = await self.store.trip(self._charge_window, window, dry_run, before)
        except BaseException:
            if step is not None:
                self._give_back(step)
            raise
        return None if step is None else self._settle(step, call_id, rule)

    def reserve(
        self, *, call_id: str, run_id: str, endpoint: str, access: Access
    ) -> Reserved | str | None:
        """Check and count the per-run limits, in memory, never waiting on the store: the
        rule that ran out, None when the call is charged (or nothing applies), else the
        ``Reserved`` units of a call whose per-window limits are still to be charged
        (``acharge_window``). The guard's hot path calls it without awaiting anything."""
        if not self.active or call_id in self._charged:
            return None
        key_ = (endpoint, access)
        checks = self._checks.get(key_)
        if checks is None:
            checks = self._checks[key_] = (
                _applicable(self.policy.limits.per_run, endpoint, access),
                _applicable(self.policy.limits.per_window, endpoint, access),
            )
        run_checks, window_checks = checks
        if not run_checks and not window_checks:
            return None
        with self._runs_lock:
            key = (self.policy.name, run_id)
            counts = self._runs.get(key)
            if counts is None:
                counts = self._runs[key] = Counter()
                if len(self._runs) > _MAX_RUNS:
                    self._runs.popitem(last=False)
            for name, limit in run_checks:
                if counts[name] >= limit:
                    return f"limits.per_run.{name}"
            for name, _ in run_checks:
                counts[name] += 1
        step = Reserved(counts, run_checks, window_checks)
        if window_checks:
            return step
        self._mark(call_id, step)
        return None

    def _give_back(self, step: Reserved) -> None:
        with self._runs_lock:
            for name, _ in step.run:
                step.counts[name] -= 1

    def _settle(self, step: Reserved, call_id: str, window_rule: str | None) -> str | None:
        """Give the per-run units back if a window refused the call, else mark it charged."""
        if window_rule is not None:
            self._give_back(step)
            return window_rule
        self._mark(call_id, step)
        return None

    def refund(self, call_id: str) -> None:
        """Give back the per-run units of a call Close failed; its retry is charged anew."""
        step = self._charged.pop(call_id, None)
        if step is not None:
            self._give_back(step)

    def refund_writes(self, call_id: str) -> None:
        """Give back what a write Close refused for a missing object took, except its place
        in ``calls`` (it was made, and still bounds a run that keeps trying): the run may
        write on the lead that object went to (a merge's destination)."""
        step = self._charged.pop(call_id, None)
        if step is None:
            return
        with self._runs_lock:
            for name, _ in step.run:
                if name != "calls":
                    step.counts[name] -= 1

    def _mark(self, call_id: str, step: Reserved) -> None:
        """Remember what ``call_id`` took (its retries are not charged again)."""
        charged = self._charged
        charged[call_id] = step
        if len(charged) > _MAX_CALL_IDS:
            charged.popitem(last=False)

    def _charge_window(
        self,
        checks: list[tuple[str, int]],
        dry_run: bool,
        before: Callable[[Connection], None] | None = None,
    ) -> str | None:
        if self.counters is None:
            raise RuntimeError("per_window limits need a store")
        prefix, start = self._window(dry_run)
        limits = [(prefix + name, limit) for name, limit in checks]
        key = self.counters.charge(limits, start, before=before)
        return None if key is None else f"limits.per_window.{key.removeprefix(prefix)}"

    def _window(self, dry_run: bool) -> tuple[str, int]:
        """The counter keys' prefix and the current window's start."""
        size = self.policy.limits.window_seconds
        prefix = f"window:{self.policy.name}{':dry_run' if dry_run else ''}:{size}:"
        return prefix, int(self.clock() // size * size)

    def window_end(self) -> float:
        """When the current per-window limits start counting afresh (epoch seconds)."""
        size = self.policy.limits.window_seconds
        return float(int(self.clock() // size * size) + size)

    def window_count(self, name: str, *, dry_run: bool = False) -> int:
        """The current window's count for ``name`` (``writes``, ``per_endpoint.task.create``)."""
        if self.counters is None:
            return 0
        prefix, start = self._window(dry_run)
        return self.counters.count(prefix + name, start)
