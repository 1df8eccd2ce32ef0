"""The crash drill's short version: a worker SIGKILLed at random points while runs drain,
restarted, on SQLite and on PostgreSQL (procrastinate's queue): nothing lost, nothing
done twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from closeguard.drills._crash_worker import WORKFLOW
from closeguard.drills.crash import crash_drill
from closeguard.simulator import BASE_URL, Simulator
from closeguard.store import Store
from closeguard.tools.errors import ConfigError
from closeguard.workflows.executor import Executor, RunSpec, build_graph
from tests._pg import fresh_database


async def test_killed_workers_on_sqlite_lose_and_repeat_nothing(tmp_path: Path) -> None:
    figures = await crash_drill(tmp_path, kills=3, runs=240, seed=1)
    assert figures.kills == 3 and figures.kills_mid_work >= 1
    assert (figures.completed, figures.lost, figures.duplicated) == (240, 0, 0)


async def test_killed_workers_on_postgresql_lose_and_repeat_nothing(tmp_path: Path) -> None:
    with fresh_database() as url:
        figures = await crash_drill(tmp_path, kills=2, runs=80, seed=2, store_url=url)
    assert figures.kills == 2
    assert (figures.completed, figures.lost, figures.duplicated) == (80, 0, 0)


async def test_a_database_holding_runs_is_refused_not_counted_as_lost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'used.db'}"
    (tmp_path / "first").mkdir()
    await crash_drill(tmp_path / "first", kills=1, runs=5, seed=3, store_url=url)
    (tmp_path / "second").mkdir()
    with pytest.raises(ConfigError, match="needs an empty database"):
        await crash_drill(tmp_path / "second", kills=1, runs=5, seed=3, store_url=url)


class DiesAfterFirstCheckpoint(InMemorySaver):
    """A checkpointer whose process 'dies' (raises) when the first step's checkpoint is
    written: the input checkpoint and its start writes are kept, nothing after them."""

    dead = True

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self.dead and metadata.get("step", -1) >= 0:
            raise OSError("killed")
        return await super().aput(config, checkpoint, metadata, new_versions)


async def test_a_run_killed_before_its_first_step_checkpoint_runs_its_steps(
    store: Store,
) -> None:
    """Found by the PostgreSQL crash drill: such a run was reported completed, steps undone."""
    sim = Simulator(seed=3, leads=1)
    lead_id = next(iter(sim.state["leads"]))
    event = {"id": "ev_1", "object_type": "lead", "action": "created", "data": {"id": lead_id}}
    spec = RunSpec(run_id="run_killed", workflow=WORKFLOW.name, event=event, lead_id=lead_id)
    saver = DiesAfterFirstCheckpoint()
    # The executor saves no checkpoint before a run stops; earlier versions saved each one,
    # so a thread may hold only the input checkpoint and its start writes: make one.
    config = {"configurable": {"thread_id": spec.run_id}}
    with pytest.raises(OSError, match="killed"):
        await build_graph(WORKFLOW, saver).ainvoke({"state": {}}, config, durability="sync")
    assert saver.get_tuple(config) is not None

    def executor() -> Executor:
        return Executor(
            store=store,
            checkpointer=saver,
            api_key=sim.api_key,
            transport=sim.transport(),
            base_url=BASE_URL,
        )

    saver.dead = False
    again = await executor().execute(WORKFLOW, spec)
    assert again.status == "completed" and again.state.get("checked") is True
    drill_tasks = [t for t in sim.state["tasks"].values() if t["text"] == "drill run_killed"]
    assert len(drill_tasks) == 1
