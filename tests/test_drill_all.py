"""``closeguard drill all``: every drill from one command, one verdict and one exit code."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.drills import battery
from closeguard.drills.attack import AttackFigures
from closeguard.drills.battery import Sizes, run_battery, scratch_database
from closeguard.tools.errors import ConfigError
from tests._pg import ADMIN_URL

TINY = Sizes(kills=1, crash_runs=6, deliveries=60, downtime_events=12, attack_calls=5)


@pytest.mark.postgres
async def test_a_small_battery_passes_on_sqlite_and_postgresql() -> None:
    seen: list[tuple[str, bool]] = []
    results = await run_battery(
        TINY,
        pg=ADMIN_URL,
        only=["downtime", "attack", "crash-pg"],
        progress=lambda name, r: seen.append((name, r is None)),
    )
    assert [r.drill for r in results] == ["downtime", "guard under attack", "crash (PostgreSQL)"]
    for r in results:
        assert r.ok, r
        assert r.lost == r.duplicated == r.reached == 0
        assert r.seconds > 0
    assert results[0].detail["events"] == 12
    assert results[2].detail["completed"] == 6
    assert seen == [(n, s) for n in ("downtime", "attack", "crash-pg") for s in (True, False)]


def _exists(name: str) -> bool:
    with psycopg.connect(ADMIN_URL) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


@pytest.mark.postgres
def test_the_scratch_database_is_new_and_dropped_afterwards() -> None:
    with scratch_database(ADMIN_URL) as url:
        name = url.rsplit("/", 1)[1]
        assert name.startswith("closeguard_drill_") and _exists(name)
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    assert not _exists(name)


def test_scratch_database_on_an_unreachable_server_is_one_config_error() -> None:
    with (
        pytest.raises(ConfigError, match=r"cannot reach PostgreSQL at postgresql://u:\*\*\*@"),
        scratch_database("postgresql://u:hunter2@127.0.0.1:1/x"),
    ):
        pass


def test_cli_refuses_unknown_drills_and_crash_pg_without_a_server() -> None:
    runner = CliRunner()
    unknown = runner.invoke(app, ["drill", "all", "--only", "nope"])
    assert unknown.exit_code == 1
    assert "unknown drill 'nope'; known: faults, crash, receiver" in unknown.stderr
    alone = runner.invoke(app, ["drill", "all", "--only", "crash-pg"])
    assert alone.exit_code == 1
    assert "needs a PostgreSQL server (--pg URL)" in alone.stderr
    unreachable = runner.invoke(
        app, ["drill", "all", "--only", "crash-pg", "--pg", "postgresql://127.0.0.1:1/x"]
    )
    assert unreachable.exit_code == 1
    assert "cannot reach PostgreSQL" in unreachable.stderr
    assert "Traceback" not in unreachable.output + unreachable.stderr


def test_a_forbidden_call_that_reached_close_fails_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def leaky(store: object, *, calls: int) -> AttackFigures:
        return AttackFigures(tried=calls, blocked=calls - 1, reached=1)

    monkeypatch.setattr(battery, "attack_drill", leaky)
    result = CliRunner().invoke(app, ["drill", "all", "--only", "attack", "--json"])
    assert result.exit_code == 1
    assert '"reached": 1' in result.stdout
    assert '"ok": false' in result.stdout
