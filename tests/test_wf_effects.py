"""The effect journal: a write at most once per run and key, whatever the crash point."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from closeguard.store import Store
from closeguard.workflows.effects import EffectJournal


class Made(BaseModel):
    id: str
    note: str | None = None


@pytest.fixture
def journal(tmp_path: Path) -> EffectJournal:
    return EffectJournal(Store(f"sqlite:///{tmp_path / 's.db'}"))


class Close:
    """Counts writes and answers reads like Close would."""

    def __init__(self) -> None:
        self.writes = 0
        self.stored: Made | None = None

    async def write(self) -> Made:
        self.writes += 1
        self.stored = Made(id=f"task_{self.writes}")
        return self.stored

    async def find(self) -> Made | None:
        return self.stored


async def test_a_journaled_result_comes_back_as_json_without_a_call(
    journal: EffectJournal,
) -> None:
    close = Close()
    first = await journal.effect("run_1", "task", close.write, find=close.find)
    again = await journal.effect("run_1", "task", close.write, find=close.find)
    assert first == again == {"id": "task_1"}
    assert close.writes == 1
    other_run = await journal.effect("run_2", "task", close.write)
    assert other_run == {"id": "task_2"}


async def test_an_intent_without_a_result_reads_close_back(journal: EffectJournal) -> None:
    close = Close()
    await journal.rows.store.run(journal.rows.intent, "run_1", "task")
    close.stored = Made(id="task_landed")  # the write landed, then the process died
    assert await journal.effect("run_1", "task", close.write, find=close.find) == {
        "id": "task_landed"
    }
    assert close.writes == 0
    row = await journal.get("run_1", "task")
    assert row is not None and (row.status, row.result) == ("done", {"id": "task_landed"})


async def test_an_intent_whose_write_did_not_land_is_written_once(
    journal: EffectJournal,
) -> None:
    close = Close()
    await journal.rows.store.run(journal.rows.intent, "run_1", "task")
    assert await journal.effect("run_1", "task", close.write, find=close.find) == {"id": "task_1"}
    assert close.writes == 1


async def test_without_find_an_unknown_write_is_made_again(journal: EffectJournal) -> None:
    close = Close()
    await journal.rows.store.run(journal.rows.intent, "run_1", "task")
    await journal.effect("run_1", "task", close.write)
    assert close.writes == 1


async def test_a_failed_write_leaves_the_intent_and_is_retried(journal: EffectJournal) -> None:
    calls: list[int] = []

    async def flaky() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("no answer")
        return {"id": "ok", "when": datetime(2026, 1, 2, tzinfo=UTC)}

    with pytest.raises(ConnectionError):
        await journal.effect("run_1", "x", flaky)
    row = await journal.get("run_1", "x")
    assert row is not None and row.status == "intent"
    result = await journal.effect("run_1", "x", flaky)
    assert result == {"id": "ok", "when": "2026-01-02T00:00:00+00:00"}
    assert await journal.effect("run_1", "x", flaky) == result, "a replay gives the same"
    assert len(calls) == 2
