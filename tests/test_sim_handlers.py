"""The handler tables and the lead -> children indexes the handlers rely on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.simulator import Simulator, load_world, save_world
from closeguard.simulator.handlers import HANDLERS, TABLES, merge
from closeguard.simulator.state import CHILD_COLLECTIONS, OrgState, build_lead_index
from closeguard.tools.catalog import ENDPOINTS

# -- the tables ----------------------------------------------------------------------------


def test_every_catalog_endpoint_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == {ep.name for ep in ENDPOINTS}
    assert sum(len(t) for t in TABLES) == len(ENDPOINTS), "a name claimed by two modules"


def _ok(_ctx: Any) -> tuple[int, Any]:
    return 200, {}


@pytest.mark.parametrize(
    ("tables", "problem"),
    [
        (({"a": _ok}, {"a": _ok, "b": _ok}), "more than one handler for ['a']"),
        (({"a": _ok},), "no handler for ['b']"),
        (({"a": _ok, "b": _ok, "c": _ok},), "the catalog lacks: ['c']"),
    ],
)
def test_merge_refuses_duplicate_missing_and_unknown_names(
    tables: tuple[dict[str, Any], ...], problem: str
) -> None:
    with pytest.raises(RuntimeError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        merge(tables, ["a", "b"])


# -- the indexes ---------------------------------------------------------------------------


def assert_indexes_current(state: OrgState) -> None:
    for collection in CHILD_COLLECTIONS:
        rebuilt = {k: list(v) for k, v in build_lead_index(state, collection).items()}
        assert state.lead_index(collection) == rebuilt, collection
        orphans = [o for o in state[collection].values() if o.get("lead_id") not in state["leads"]]
        assert not orphans, f"{collection} left behind by a deleted or merged lead"


def test_collections_are_read_only_outside_the_state_methods() -> None:
    sim = Simulator(seed=3, leads=2, rate_limits=None)
    with pytest.raises(TypeError):
        sim.state["leads"]["x"] = {"id": "x"}  # type: ignore[index]


def test_touch_and_load_rebuild_the_indexes(tmp_path: Path) -> None:
    sim = Simulator(seed=3, leads=4, rate_limits=None)
    state = sim.state
    first, second = list(state["leads"])[:2]
    contact = state.children("contacts", first)[0]
    state.collections["contacts"][contact["id"]]["lead_id"] = second
    state.touch()
    assert contact in state.children("contacts", second)
    assert_indexes_current(state)
    save_world(tmp_path / "w.json", state)
    loaded, _ = load_world(tmp_path / "w.json")
    assert_indexes_current(loaded)
    assert [c["id"] for c in loaded.children("contacts", second)] == [
        c["id"] for c in state.children("contacts", second)
    ]


class _NoScan(dict[str, Any]):
    """A collection that refuses to be walked: a write must reach children by index."""

    def _refuse(self, *_: Any) -> Any:
        raise AssertionError("a request scanned a whole collection")

    values = items = keys = __iter__ = _refuse  # type: ignore[assignment]


async def test_lead_writes_never_scan_child_collections() -> None:
    sim = Simulator(seed=5, leads=30, rate_limits=None)
    for name in CHILD_COLLECTIONS:
        sim.state.collections[name] = _NoScan(sim.state.collections[name])
    source, dest = list(sim.state["leads"])[:2]
    async with sim.http_client() as http:
        made = await http.post("/lead/", json={"name": "New", "contacts": [{"name": "N"}]})
        assert made.status_code == 200, made.text
        calls = [
            http.put(f"/lead/{made.json()['id']}/", json={"name": "Renamed"}),
            http.get(f"/lead/{dest}/"),
            http.post("/contact/", json={"lead_id": dest, "name": "C"}),
            http.post("/lead/merge/", json={"source": source, "destination": dest}),
            http.delete(f"/lead/{dest}/"),
            http.get("/contact/", params={"lead_id": made.json()["id"]}),
        ]
        for call in calls:
            response = await call
            assert response.status_code == 200, response.text


# Random write sequences: the maintained indexes must equal indexes rebuilt from scratch.
_STEP = st.tuples(
    st.sampled_from(
        [
            "lead",
            "lead_with_contacts",
            "contact",
            "opportunity",
            "opportunity_status",
            "task",
            "note",
            "lead_status",
            "delete_lead",
            "delete_contact",
            "delete_opportunity",
            "delete_task",
            "delete_note",
            "merge",
            "bad_merge",
        ]
    ),
    st.integers(0, 1_000),
    st.integers(0, 1_000),
)


async def _step(sim: Simulator, http: Any, kind: str, a: int, b: int) -> None:
    state = sim.state
    leads = list(state["leads"])

    def pick(collection: str, n: int) -> str | None:
        ids = list(state[collection])  # type: ignore[index]
        return ids[n % len(ids)] if ids else None

    lead = leads[a % len(leads)] if leads else None
    if (kind.startswith("lead") and kind != "lead_status") or lead is None:
        body: dict[str, Any] = {"name": f"L{a}"}
        if kind == "lead_with_contacts":
            body["contacts"] = [{"name": f"C{a}"}, {"name": f"D{b}"}]
        await http.post("/lead/", json=body)
    elif kind in ("contact", "opportunity", "task", "note"):
        path = {"note": "/activity/note/"}.get(kind, f"/{kind}/")
        extra = {"contact": {"name": "c"}, "task": {"text": "t"}, "note": {"note": "n"}}
        await http.post(path, json={"lead_id": lead, **extra.get(kind, {})})
    elif kind == "opportunity_status" and (opp := pick("opportunities", b)):
        await http.put(f"/opportunity/{opp}/", json={"status_id": pick("opportunity_statuses", a)})
    elif kind == "lead_status":
        await http.put(f"/lead/{lead}/", json={"status_id": pick("lead_statuses", b)})
    elif kind == "delete_lead":
        await http.delete(f"/lead/{lead}/")
    elif kind.startswith("delete_"):
        resource = kind.removeprefix("delete_")
        collection = {"note": "activities", "opportunity": "opportunities"}.get(
            resource, f"{resource}s"
        )
        if (oid := pick(collection, b)) is not None:
            path = "/activity/note/" if resource == "note" else f"/{resource}/"
            await http.delete(f"{path}{oid}/")
    elif kind in ("merge", "bad_merge"):
        dest = leads[b % len(leads)] if kind == "merge" else "lead_missing"
        await http.post("/lead/merge/", json={"source": lead, "destination": dest})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=25), seed=st.integers(0, 5))
def test_indexes_match_a_rebuild_after_random_requests(
    steps: list[tuple[str, int, int]], seed: int
) -> None:
    sim = Simulator(seed=seed, leads=4, rate_limits=None)

    async def run() -> None:
        async with sim.http_client() as http:
            for kind, a, b in steps:
                await _step(sim, http, kind, a, b)
                assert_indexes_current(sim.state)

    asyncio.run(run())
    snapshot = json.loads(json.dumps(sim.state.to_json()))
    assert_indexes_current(OrgState.from_json(snapshot))
