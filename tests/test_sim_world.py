"""Seeded worlds: determinism, JSON round trip, the state hash and diff, and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeguard.cli import app as cli_app
from closeguard.simulator import Simulator, WorldFileError, generate_world, load_world
from closeguard.simulator.clock import FakeClock
from closeguard.simulator.hashing import TIMESTAMP_FIELDS

ANCHOR = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_same_seed_same_world_ids_included() -> None:
    a, b = generate_world(5, 30, ANCHOR), generate_world(5, 30, ANCHOR)
    assert a.to_json() == b.to_json()
    assert generate_world(6, 30, ANCHOR).to_json() != a.to_json()
    assert (
        Simulator(seed=5, leads=30, anchor=ANCHOR).state_hash()
        == Simulator(seed=5, leads=30, anchor=ANCHOR).state_hash()
    )


def test_world_is_a_believable_sales_org() -> None:
    state = generate_world(2, 40, ANCHOR)
    assert [s["label"] for s in state["lead_statuses"].values()] == [
        "Potential",
        "Bad Fit",
        "Qualified",
        "Customer",
    ]
    pipeline = next(iter(state["pipelines"].values()))
    assert pipeline["name"] == "Sales"
    types = Counter(s["type"] for s in state["opportunity_statuses"].values())
    assert types["active"] >= 1 and types["won"] == 1 and types["lost"] == 1
    assert len(state["leads"]) == 40 and len(state["users"]) == 4
    per_lead = Counter(c["lead_id"] for c in state["contacts"].values())
    assert set(per_lead.values()) <= {1, 2, 3} and set(per_lead) == set(state["leads"])
    activity_types = Counter(a["_type"] for a in state["activities"].values())
    assert {"Note", "Call", "Email"} <= set(activity_types)
    assert state["opportunities"] and state["tasks"]
    dates = sorted(a["date_created"] for a in state["activities"].values())
    assert dates[0] < "2025-12-01" and dates[-1] < ANCHOR.isoformat()
    assert all(k.startswith("lead_") and len(k) == 48 for k in state["leads"])


async def test_runtime_ids_are_deterministic_too() -> None:
    async def run() -> list[str]:
        sim = Simulator(seed=1, leads=2, anchor=ANCHOR, clock=FakeClock())
        async with sim.http_client() as http:
            lead = (await http.post("/lead/", json={"name": "x"})).json()
            await http.post("/task/", json={"lead_id": lead["id"]})
        return [e["object_id"] for e in sim.events] + [e["id"] for e in sim.events]

    assert await run() == await run()


async def test_save_load_round_trip(tmp_path: Path) -> None:
    sim = Simulator(seed=4, leads=8, clock=FakeClock())
    async with sim.http_client() as http:
        await http.post("/lead/", json={"name": "saved"})
    path = tmp_path / "world.json"
    sim.save(path)
    again = Simulator.load(path, clock=FakeClock())
    assert again.state_hash() == sim.state_hash()
    assert again.events == sim.events and again.api_key == sim.api_key
    async with again.http_client() as http:
        made = (await http.post("/lead/", json={"name": "after"})).json()
        listed = (await http.get("/event/")).json()["data"]
    assert made["id"] not in sim.state["leads"]
    assert len(listed) == len(sim.events) + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{oops", "not valid JSON"),
        ('{"format": "x"}', "not a closeguard"),
        ('{"format": "closeguard-sim-world", "version": 1, "state": {}}', "malformed"),
    ],
)
def test_bad_world_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "w.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(WorldFileError, match=message):
        load_world(path)


async def test_hash_and_diff() -> None:
    sim = Simulator(seed=9, leads=5, clock=FakeClock())
    base_hash, before = sim.state_hash(), sim.snapshot()
    assert sim.diff(before).empty
    async with sim.http_client() as http:
        await http.get("/lead/")
        assert sim.state_hash() == base_hash
        lead_id, other = list(sim.state["leads"])[:2]
        await http.put(f"/lead/{lead_id}/", json={"description": "changed"})
        made = (await http.post("/task/", json={"lead_id": other, "text": "new"})).json()
        contact = next(c for c in sim.state["contacts"].values() if c["lead_id"] == other)
        await http.delete(f"/contact/{contact['id']}/")
    assert sim.state_hash() != base_hash
    change = sim.diff(before)
    assert [(c.collection, c.id) for c in change.added] == [("tasks", made["id"])]
    assert [(c.collection, c.id) for c in change.removed] == [("contacts", contact["id"])]
    (lead_change,) = change.changed
    assert lead_change.id == lead_id
    assert {"description", "date_updated"} <= set(lead_change.fields)
    assert set(lead_change.fields) <= {"description", "date_updated", "updated_by"}
    assert lead_change.fields["description"][1] == "changed"
    assert set(sim.diff(before, {*TIMESTAMP_FIELDS, "updated_by"}).changed[0].fields) == {
        "description"
    }
    assert json.loads(json.dumps(change.to_json()))["added"][0]["id"] == made["id"]
    assert change.summary() == "+1 -1 ~1"


def test_hash_ignores_volatile_fields_on_request() -> None:
    a = Simulator(seed=3, leads=4, anchor=ANCHOR)
    b = Simulator(seed=3, leads=4, anchor=datetime(2026, 5, 1, tzinfo=UTC))
    assert a.state_hash() != b.state_hash()
    volatile = {*TIMESTAMP_FIELDS, "date", "date_won", "date_lost", "is_complete"}
    assert a.state_hash(volatile) == b.state_hash(volatile)


def test_cli_seed_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "w.json"
    result = runner.invoke(
        cli_app, ["sim", "seed", "--out", str(out), "--seed", "2", "--leads", "5"]
    )
    assert result.exit_code == 0, result.output
    assert len(load_world(out)[0]["leads"]) == 5
    missing = runner.invoke(cli_app, ["sim", "serve", "--world", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "world file not found" in missing.output
    assert "Traceback" not in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    broken = runner.invoke(cli_app, ["sim", "serve", "--world", str(bad)])
    assert broken.exit_code == 1 and "not valid JSON" in broken.output
