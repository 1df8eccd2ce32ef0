"""Quotas: how many calls a run, and a policy per time window, may make.

Per-run counters live in process memory, keyed by policy and run id (a run executes in one
process). Per-window counters live in the store (``quota_counters``), so every worker on the
same store shares them; the check and the increment are one conditional upsert
(``RETURNING`` tells whether it counted), so two workers cannot both take the last unit.
A logical call is charged once, whatever the number of attempts (retries share ``call_id``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import Executable

from closeguard.guardrails.policy import Counters, Policy
from closeguard.store import Store
from closeguard.tools.models import Access

__all__ = ["Quotas"]

_MAX_RUNS = 10_000
_MAX_CALL_IDS = 10_000


class _Exceeded(Exception):
    def __init__(self, rule: str) -> None:
        self.rule = rule


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


class Quotas:
    """Charges calls against a policy's ``limits``; returns the rule that ran out."""

    _runs: OrderedDict[tuple[str, str], Counter[str]] = OrderedDict()
    _runs_lock = threading.Lock()

    def __init__(
        self, policy: Policy, store: Store | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock
        self._charged: OrderedDict[str, None] = OrderedDict()
        self._checks: dict[
            tuple[str, str], tuple[list[tuple[str, int]], list[tuple[str, int]]]
        ] = {}
        self.active = not (policy.limits.per_run.empty and policy.limits.per_window.empty)

    def charge(
        self, *, call_id: str, run_id: str, endpoint: str, access: Access, dry_run: bool = False
    ) -> str | None:
        """Count one call; the limit rule it would exceed (nothing counted), else None."""
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
            if window_checks:
                rule = self._charge_window(window_checks, dry_run)
                if rule is not None:
                    return rule
            for name, _ in run_checks:
                counts[name] += 1
        self._charged[call_id] = None
        if len(self._charged) > _MAX_CALL_IDS:
            self._charged.popitem(last=False)
        return None

    def _charge_window(self, checks: list[tuple[str, int]], dry_run: bool) -> str | None:
        if self.store is None:
            raise RuntimeError("per_window limits need a store")
        size = self.policy.limits.window_seconds
        start = int(self.clock() // size * size)
        prefix = f"window:{self.policy.name}{':dry_run' if dry_run else ''}:{size}:"
        table = self.store.tables.quota
        try:
            with self.store.engine.begin() as conn:
                for name, limit in checks:
                    stmt = _upsert(self.store.dialect, table, prefix + name, start, limit)
                    if conn.execute(stmt).first() is None:
                        raise _Exceeded(f"limits.per_window.{name}")
        except _Exceeded as exc:
            return exc.rule
        return None

    def window_count(self, name: str, *, dry_run: bool = False) -> int:
        """The current window's count for ``name`` (``writes``, ``per_endpoint.task.create``)."""
        if self.store is None:
            return 0
        size = self.policy.limits.window_seconds
        start = int(self.clock() // size * size)
        key = f"window:{self.policy.name}{':dry_run' if dry_run else ''}:{size}:{name}"
        table = self.store.tables.quota
        with self.store.engine.connect() as conn:
            row = conn.execute(
                table.select().where((table.c.key == key) & (table.c.window_start == start))
            ).first()
        return int(row._mapping["count"]) if row else 0


def _upsert(dialect: str, table: Table, key: str, start: int, limit: int) -> Executable:
    if limit <= 0:
        # An insert of a first row would pass; a zero limit never does.
        return table.update().where(table.c.key == "\x00never").returning(table.c.key)
    index = [table.c.key, table.c.window_start]
    bump = {"count": table.c["count"] + 1}
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(key=key, window_start=start, count=1)
        return pg.on_conflict_do_update(
            index_elements=index, set_=bump, where=table.c["count"] < limit
        ).returning(table.c["count"])
    lite = sqlite.insert(table).values(key=key, window_start=start, count=1)
    return lite.on_conflict_do_update(
        index_elements=index, set_=bump, where=table.c["count"] < limit
    ).returning(table.c["count"])
