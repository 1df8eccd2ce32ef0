"""Every drill of docs/reliability.md in one go (``closeguard drill all``).

Each drill keeps its own figures; here they are folded into one ``DrillResult`` row each
(what was tried, lost, duplicated, forbidden calls that reached Close, seconds) so one
table, and one exit code, says whether closeguard lost, doubled or let through anything.
The crash drill runs on PostgreSQL too when a server is given: it gets a scratch database
of its own, dropped afterwards, so the user's data is never touched.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from closeguard.drills.attack import attack_drill
from closeguard.drills.crash import crash_drill
from closeguard.drills.downtime import downtime_drill
from closeguard.drills.faults import PROFILES, fault_matrix
from closeguard.drills.receiver import receiver_drill
from closeguard.store import Store
from closeguard.tools.errors import ConfigError

__all__ = ["DrillResult", "Sizes", "run_battery", "scratch_database"]


@dataclass(frozen=True)
class Sizes:
    """How hard each drill pushes; the defaults are the figures of docs/reliability.md."""

    fault_seeds: int = 1
    kills: int = 50
    crash_runs: int = 600
    deliveries: int = 2000
    downtime_events: int = 500
    attack_calls: int = 200


@dataclass
class DrillResult:
    """One drill's verdict: ``ok`` when nothing was lost, doubled, done unasked or let
    through. A run left dead (shown in ``runs list``, retriable) or a write Close failed
    and the agent reported is not a loss: the user sees it and nothing was guessed."""

    drill: str
    tried: str
    lost: int
    duplicated: int
    reached: int
    seconds: float
    ok: bool
    detail: dict[str, Any]


@contextlib.contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new, empty database on the server of ``url`` (``closeguard_drill_<random>``),
    dropped with its sessions afterwards; its URL."""
    name = f"closeguard_drill_{uuid.uuid4().hex[:10]}"
    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    try:
        admin = psycopg.connect(plain, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot reach PostgreSQL at {_safe(url)}: {first}") from None
    try:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise ConfigError(f"cannot create a scratch database on {_safe(url)}: {exc}") from None
        yield plain.rsplit("/", 1)[0] + "/" + name
    finally:
        with contextlib.suppress(psycopg.Error):
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


def _safe(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _sum(figures: list[Any], name: str) -> int:
    return sum(int(getattr(f, name, 0)) for f in figures)


async def _faults(sizes: Sizes, folder: Path) -> DrillResult:
    figures = await fault_matrix(list(PROFILES), seeds=sizes.fault_seeds)
    lost, doubled = _sum(figures, "lost"), _sum(figures, "duplicated")
    tried, done = _sum(figures, "tried"), _sum(figures, "completed")
    unwanted, other = _sum(figures, "unwanted"), _sum(figures, "other")
    dead, refused = _sum(figures, "dead"), _sum(figures, "refused_to_guess")
    detail = {"profiles": [asdict(f) for f in figures]}
    return DrillResult(
        "faults",
        f"{tried} trials, {len(figures)} profiles; {done} completed, {dead} dead (retriable), "
        f"{refused} writes Close failed and the agent reported",
        lost,
        doubled,
        0,
        0.0,
        lost == doubled == unwanted == other == 0,
        detail,
    )


async def _crash(sizes: Sizes, folder: Path, store_url: str | None = None) -> DrillResult:
    figures = await crash_drill(
        folder, kills=sizes.kills, runs=sizes.crash_runs, store_url=store_url
    )
    ok = figures.lost == figures.duplicated == 0 and figures.completed == figures.runs
    return DrillResult(
        "crash (PostgreSQL)" if store_url else "crash (SQLite)",
        f"{figures.kills} kills ({figures.kills_mid_work} mid-work), "
        f"{figures.completed}/{figures.runs} runs completed",
        figures.lost,
        figures.duplicated,
        0,
        0.0,
        ok,
        asdict(figures),
    )


async def _receiver(sizes: Sizes, folder: Path) -> DrillResult:
    figures = await receiver_drill(folder, deliveries=sizes.deliveries)
    return DrillResult(
        "receiver kill",
        f"{figures.deliveries} deliveries, {figures.answered_before_kill} answered before the "
        f"kill; {figures.stored} stored",
        figures.lost,
        figures.duplicated,
        0,
        0.0,
        figures.lost == figures.duplicated == 0 and figures.stored == figures.deliveries,
        asdict(figures),
    )


async def _downtime(sizes: Sizes, folder: Path) -> DrillResult:
    store = Store(f"sqlite:///{folder / 'store.db'}")
    try:
        figures = await downtime_drill(store, events=sizes.downtime_events)
    finally:
        store.dispose()
    ok = (
        figures.lost == figures.duplicated == figures.runs_other == 0
        and figures.caught_up == figures.events
    )
    return DrillResult(
        "downtime",
        f"{figures.events} events while down; {figures.caught_up} caught up, "
        f"{figures.runs_completed} runs completed",
        figures.lost,
        figures.duplicated,
        0,
        0.0,
        ok,
        asdict(figures),
    )


async def _attack(sizes: Sizes, folder: Path) -> DrillResult:
    store = Store(f"sqlite:///{folder / 'store.db'}")
    try:
        figures = await attack_drill(store, calls=sizes.attack_calls)
    finally:
        store.dispose()
    return DrillResult(
        "guard under attack",
        f"{figures.tried} calls, {figures.blocked} blocked; "
        f"{figures.attacks_succeeded}/{figures.attacks} attacks succeeded",
        0,
        0,
        figures.reached,
        0.0,
        figures.reached == figures.attacks_succeeded == figures.mismatches == 0,
        asdict(figures),
    )


Drill = Callable[[Sizes, Path], Awaitable[DrillResult]]


async def run_battery(
    sizes: Sizes = Sizes(),
    *,
    pg: str | None = None,
    only: list[str] | None = None,
    progress: Callable[[str, DrillResult | None], None] | None = None,
) -> list[DrillResult]:
    """Run the drills one after another (they share two cores badly); ``pg``, a PostgreSQL
    URL, adds the crash drill on a scratch database of that server. ``progress(name,
    None)`` is called as a drill starts and ``progress(name, result)`` as it ends."""
    drills: dict[str, Drill] = {
        "faults": _faults,
        "crash": _crash,
        "receiver": _receiver,
        "downtime": _downtime,
        "attack": _attack,
    }
    if pg is not None:
        url = pg

        async def crash_pg(sizes: Sizes, folder: Path) -> DrillResult:
            with scratch_database(url) as scratch:
                return await _crash(sizes, folder, scratch)

        drills["crash-pg"] = crash_pg
    chosen = only or list(drills)
    if "crash-pg" in chosen and pg is None:
        raise ConfigError("the crash-pg drill needs a PostgreSQL server (--pg URL)")
    unknown = [n for n in chosen if n not in drills]
    if unknown:
        raise ConfigError(f"unknown drill {unknown[0]!r}; known: {', '.join(drills)}")
    results: list[DrillResult] = []
    for name in chosen:
        if progress:
            progress(name, None)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="closeguard-drill-") as folder:
            result = await drills[name](sizes, Path(folder))
        result.seconds = round(time.perf_counter() - started, 1)
        results.append(result)
        if progress:
            progress(name, result)
    return results
