"""The durable round robin of ``new-lead-triage``: fair whatever happens around it.

1,000 leads over 4 users are 250 each with one worker or with four processes at once (on
SQLite and PostgreSQL); a retried run keeps its first choice; a user who leaves drops out;
and random interleavings of lead creations, deletes, merges, restarts and workers keep
every user's count within one of the others'.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closeguard.store import Store
from closeguard.store.rotation import Rotation
from tests._pg import ADMIN_URL, schema_store
from tests._wf_crm import Crm, of

USERS = ["user_a", "user_b", "user_c", "user_d"]
TRIAGE = "new-lead-triage"
ROOT = Path(__file__).resolve().parent.parent


def test_a_thousand_leads_over_four_users_are_two_hundred_fifty_each(store: Store) -> None:
    rotation = Rotation(store)
    for i in range(1000):
        rotation.take("r", f"lead_{i}", USERS)
    assert rotation.counts("r") == dict.fromkeys(USERS, 250)


def test_a_retried_lead_keeps_its_first_choice_and_takes_no_other_turn(store: Store) -> None:
    rotation = Rotation(store)
    first = [rotation.take("r", f"lead_{i}", USERS) for i in range(3)]
    again = rotation.take("r", "lead_1", list(reversed(USERS)))
    assert again == first[1]
    assert rotation.take("r", "lead_new", USERS).turn == 3


def test_a_user_who_leaves_drops_out_of_the_rotation(store: Store) -> None:
    rotation = Rotation(store)
    for i in range(8):
        rotation.take("r", f"lead_{i}", USERS)
    staying = USERS[:3]
    later = [rotation.take("r", f"later_{i}", staying).user_id for i in range(9)]
    assert set(later) == set(staying) and all(later.count(u) == 3 for u in staying)
    with pytest.raises(ValueError, match="no users"):
        rotation.take("r", "lead_x", [])


def _processes(url: str, schema: str, subjects: int, count: int = 4) -> None:
    script = str(ROOT / "tests" / "_rotation_proc.py")
    procs = [
        subprocess.Popen(
            [sys.executable, script, url, schema, str(i), str(count), str(subjects)], cwd=ROOT
        )
        for i in range(count)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0


def test_four_processes_on_sqlite_share_one_fair_rotation(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rotation.db'}"
    Store(url).dispose()
    _processes(url, "-", 1000)
    store = Store(url)
    try:
        assert Rotation(store).counts("test-rotation") == dict.fromkeys(USERS, 250)
    finally:
        store.dispose()


def test_four_processes_on_postgresql_share_one_fair_rotation() -> None:
    with schema_store("cg_rot_") as store:
        assert store.schema is not None
        _processes(ADMIN_URL, store.schema, 1000)
        assert Rotation(store).counts("test-rotation") == dict.fromkeys(
            ["user_a", "user_b", "user_c", "user_d"], 250
        )


ACTIONS = st.lists(
    st.one_of(
        st.just(("create",)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("merge"), st.integers(0, 50), st.integers(0, 50)),
        st.just(("restart",)),
        st.tuples(st.just("work"), st.integers(1, 4), st.integers(1, 4)),
    ),
    min_size=4,
    max_size=24,
)


async def _play(store: Store, actions: list[tuple[object, ...]]) -> None:
    crm = Crm(store, TRIAGE, leads=2)
    workers = crm.workers(1)
    leads: list[str] = []
    for action in actions:
        kind = action[0]
        if kind == "create":
            events = await crm.act(lambda c: c.leads.create({"name": f"Lead {len(leads)}"}))
            leads.append(str(of(events, "lead", "created")["object_id"]))
            await crm.deliver(events)
        elif kind == "delete" and leads:
            doomed = leads.pop(int(str(action[1])) % len(leads))
            await crm.deliver(await crm.act(lambda c, d=doomed: c.leads.delete(d)))
        elif kind == "merge" and len(leads) > 1:
            source = leads.pop(int(str(action[1])) % len(leads))
            into = leads[int(str(action[2])) % len(leads)]
            await crm.deliver(await crm.act(lambda c, s=source, d=into: c.leads.merge(s, d)))
        elif kind == "restart":
            workers = crm.workers(len(workers))  # a new process: a fresh executor and cache
        elif kind == "work":
            workers = crm.workers(int(str(action[1])))
            runs = int(str(action[2]))
            lanes = [w.run_one() for w in workers[:runs]]
            await asyncio.gather(*lanes)
    await crm.drain(workers)
    runs = await crm.runs()
    assert {r.status for r in runs} <= {"completed", "skipped"}, [r.error for r in runs]
    counts = Rotation(store).counts(TRIAGE)
    members = sorted(crm.sim.state["users"])
    per_user = [counts.get(u, 0) for u in members]
    assert max(per_user) - min(per_user) <= 1, counts
    owners = [r.state["owner"] for r in runs if r.status == "completed" and r.state]
    assert sorted(owners) == sorted(u for u, n in counts.items() for _ in range(n))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_random_interleavings_keep_every_users_count_within_one(
    tmp_path: Path, actions: list[tuple[object, ...]]
) -> None:
    store = Store(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
    try:
        asyncio.run(_play(store, actions))
    finally:
        store.dispose()
