"""A claim's cost does not grow with the runs already finished: it searches the unfinished
runs of the worker's workflows (index ``ix_runs_workflow_status``, migration ``0003``),
never every run ever made (a soak's claims grew to ~85 ms at 30,000 finished runs)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pytest
from sqlalchemy import inspect, text, update

from closeguard.store import Store
from closeguard.store.migrations import current, head
from closeguard.store.runs import WORKFLOW_STATUS_INDEX, RunRows


def _run(key: str, lead: str, workflow: str = "wf") -> dict[str, object]:
    return {
        "id": f"run_{key}",
        "workflow": workflow,
        "trigger_key": key,
        "kind": "event",
        "payload": {},
        "lead_id": lead,
    }


def claim_steps(finished: int, workflows: Collection[str] | None, *, queued: bool) -> int:
    """SQLite VM steps (in tens) one claim takes with ``finished`` completed runs in the
    table, and one queued run (``queued``) or none."""
    store = Store("sqlite://")
    rows = RunRows(store)
    rows.enqueue([_run(f"f{i}", f"lead_f{i}") for i in range(finished)])
    with store.engine.begin() as conn:
        conn.execute(update(rows.table).values(status="completed"))
    if queued:
        rows.enqueue([_run("q", "lead_q")])
    raw = store.engine.raw_connection()
    sqlite = raw.driver_connection
    assert sqlite is not None
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    sqlite.set_progress_handler(count, 10)
    try:
        claimed = rows.claim("w", 60.0, workflows=workflows)
    finally:
        sqlite.set_progress_handler(None, 10)
        raw.close()
    assert (claimed.id if claimed else None) == ("run_q" if queued else None)
    store.dispose()
    return steps


@pytest.mark.parametrize("workflows", [["wf"], None], ids=["of-workflows", "any"])
@pytest.mark.parametrize("queued", [True, False], ids=["one-queued", "nothing-claimable"])
def test_a_claim_costs_the_same_with_thousands_of_finished_runs(
    workflows: list[str] | None, queued: bool
) -> None:
    empty = claim_steps(0, workflows, queued=queued)
    full = claim_steps(3000, workflows, queued=queued)
    assert full <= 2 * empty + 20, f"{empty} steps with no finished run, {full} with 3,000"


def test_a_claim_still_takes_runs_in_order_and_only_of_its_workflows() -> None:
    store = Store("sqlite://")
    rows = RunRows(store)
    rows.enqueue([_run("a1", "lead_a"), _run("b1", "lead_b", "other"), _run("a2", "lead_a")])
    rows.enqueue([_run("c1", "lead_c")])
    first = rows.claim("w", 60.0, workflows=["wf"])
    second = rows.claim("w", 60.0, workflows=["wf"])
    assert (first and first.id, second and second.id) == ("run_a1", "run_c1")
    assert rows.claim("w", 60.0, workflows=["wf"]) is None, "a2 waits for a1 (same lead)"
    other = rows.claim("w", 60.0)
    assert other is not None and other.id == "run_b1"
    store.dispose()


def test_a_store_at_revision_0002_gets_the_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    with old.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {WORKFLOW_STATUS_INDEX}"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    old.dispose()
    store = Store(url)
    assert store.revision_before == "0002"
    indexes = {i["name"]: i["column_names"] for i in inspect(store.engine).get_indexes("runs")}
    assert indexes[WORKFLOW_STATUS_INDEX] == ["workflow", "status"]
    with store.engine.connect() as conn:
        assert current(conn) == head()
    store.dispose()
