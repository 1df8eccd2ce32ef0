"""The crash drill's short version: a worker SIGKILLed at random points while runs drain,
restarted, on SQLite and on PostgreSQL (procrastinate's queue): nothing lost, nothing
done twice."""

from __future__ import annotations

from pathlib import Path

from closeguard.drills.crash import crash_drill
from tests._pg import fresh_database


async def test_killed_workers_on_sqlite_lose_and_repeat_nothing(tmp_path: Path) -> None:
    figures = await crash_drill(tmp_path, kills=3, runs=120, seed=1)
    assert figures.kills == 3 and figures.kills_mid_work >= 1
    assert (figures.completed, figures.lost, figures.duplicated) == (120, 0, 0)


async def test_killed_workers_on_postgresql_lose_and_repeat_nothing(tmp_path: Path) -> None:
    with fresh_database() as url:
        figures = await crash_drill(tmp_path, kills=2, runs=80, seed=2, store_url=url)
    assert figures.kills == 2
    assert (figures.completed, figures.lost, figures.duplicated) == (80, 0, 0)
