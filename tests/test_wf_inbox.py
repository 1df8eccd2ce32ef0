"""The durable inbox: events stored once, one run per (workflow, event), ticks once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from closeguard.guardrails import Policy
from closeguard.store import Store
from closeguard.tools.clock import FakeClock
from closeguard.workflows.definition import (
    Context,
    EventTrigger,
    ManualTrigger,
    ScheduleTrigger,
    Workflow,
)
from closeguard.workflows.inbox import Inbox
from closeguard.workflows.queue import SqlRunQueue
from tests.test_wf_queue_contract import postgresql_queue

POLICY = Policy.from_dict({"name": "nothing", "grants": {"lead": "read"}})


async def noop(ctx: Context) -> None:
    return None


def wf(name: str, trigger: Any) -> Workflow:
    return Workflow(name, trigger, POLICY, (noop,))


WORKFLOWS = [
    wf("on-lead", EventTrigger("lead", "created")),
    wf("on-any-lead", EventTrigger("lead", ("created", "updated"))),
    wf("on-won", EventTrigger("opportunity", "updated", data={"status_type": "won"})),
    wf("daily", ScheduleTrigger(every=timedelta(days=1))),
    wf("by-hand", ManualTrigger(("user",))),
]


def lead_created(event_id: str, lead: str = "lead_1") -> dict[str, Any]:
    return {
        "id": event_id,
        "object_type": "lead",
        "action": "created",
        "object_id": lead,
        "lead_id": lead,
        "data": {"id": lead},
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'inbox.db'}")


@pytest.fixture
def inbox(store: Store) -> Inbox:
    return Inbox(store, WORKFLOWS)


async def test_an_event_becomes_one_run_per_matching_workflow(inbox: Inbox) -> None:
    assert await inbox.add(lead_created("ev_1"), source="webhook")
    runs = await inbox.queue.list()
    assert sorted((r.workflow, r.lead_id, r.trigger_key) for r in runs) == [
        ("on-any-lead", "lead_1", "ev_1"),
        ("on-lead", "lead_1", "ev_1"),
    ]
    assert all(r.payload == {"event": lead_created("ev_1")} for r in runs)


async def test_duplicated_and_replayed_deliveries_have_one_effect(inbox: Inbox) -> None:
    seen: list[tuple[str, bool]] = []
    inbox.listeners.append(lambda e, source, new: seen.append((source, new)))
    assert await inbox.add(lead_created("ev_1"), source="webhook")
    assert not await inbox.add(lead_created("ev_1"), source="webhook")
    assert await inbox.add_many([lead_created("ev_1"), lead_created("ev_2")], source="catchup") == 1
    assert len(await inbox.queue.list()) == 4
    assert seen == [("webhook", True), ("webhook", False), ("catchup", False), ("catchup", True)]


async def test_an_event_no_workflow_wants_is_stored_without_runs(inbox: Inbox) -> None:
    event = {"id": "ev_9", "object_type": "opportunity", "action": "updated", "data": {}}
    assert await inbox.add(event, source="webhook")
    assert await inbox.queue.list() == []
    stored = inbox.rows.get("ev_9")
    assert stored is not None and stored.dispatched and stored.payload == event


async def test_an_event_without_an_id_is_refused(inbox: Inbox) -> None:
    with pytest.raises(ValueError, match="id"):
        await inbox.add({"object_type": "lead"}, source="webhook")


async def test_a_tick_runs_once_however_many_schedulers_fire_it(store: Store) -> None:
    first, second = Inbox(store, WORKFLOWS), Inbox(store, WORKFLOWS)
    tick = datetime(2026, 11, 27, 8, tzinfo=UTC)
    run_id = await first.add_tick("daily", tick)
    assert run_id is not None
    assert await second.add_tick("daily", tick) is None
    assert await second.add_tick("daily", tick + timedelta(days=1)) is not None
    runs = await first.queue.list()
    assert sorted(r.trigger_key for r in runs) == [
        "tick:2026-11-27T08:00:00+00:00",
        "tick:2026-11-28T08:00:00+00:00",
    ]


async def test_manual_runs_check_required_params(inbox: Inbox) -> None:
    with pytest.raises(ValueError, match="user"):
        await inbox.add_manual("by-hand", {})
    with pytest.raises(KeyError, match="enabled"):
        await inbox.add_manual("nope", {})
    run_id = await inbox.add_manual("by-hand", {"user": "u1"}, key="once")
    assert (
        run_id is not None and await inbox.add_manual("by-hand", {"user": "u1"}, key="once") is None
    )
    run = await inbox.queue.get(run_id)
    assert run is not None and run.payload == {"params": {"user": "u1"}} and run.kind == "manual"


class ForeignQueue(SqlRunQueue):
    """A queue the inbox cannot write in its own transaction (like a PostgreSQL engine)."""

    def __init__(self, store: Store, *, fail: bool = False) -> None:
        super().__init__(store)
        self.fail = fail

    async def enqueue(self, requests: Any) -> list[str]:
        if self.fail:
            raise ConnectionError("queue down")
        return await super().enqueue(requests)


async def test_events_stored_before_a_crash_are_dispatched_on_restart(tmp_path: Path) -> None:
    queue_store = Store(f"sqlite:///{tmp_path / 'q.db'}")
    store = Store(f"sqlite:///{tmp_path / 'inbox.db'}")
    broken = Inbox(store, WORKFLOWS, ForeignQueue(queue_store, fail=True))
    with pytest.raises(ConnectionError):
        await broken.add(lead_created("ev_1"), source="webhook")
    restarted = Inbox(store, WORKFLOWS, ForeignQueue(queue_store))
    assert not await restarted.add(lead_created("ev_1"), source="webhook")
    assert await restarted.queue.list() == []
    assert await restarted.redispatch() == 1
    assert len(await restarted.queue.list()) == 2
    assert await restarted.redispatch() == 0


async def test_the_inbox_on_postgresql_stores_and_queues_once() -> None:

    with postgresql_queue(Path("."), FakeClock()) as queue:
        assert isinstance(queue, SqlRunQueue)
        inbox = Inbox(queue.store, WORKFLOWS, queue)
        assert await inbox.add_many([lead_created("ev_1"), lead_created("ev_1")], source="w") == 1
        assert not await inbox.add(lead_created("ev_1"), source="catchup")
        tick = datetime(2026, 11, 27, 8, tzinfo=UTC)
        assert await inbox.add_tick("daily", tick) is not None
        assert await inbox.add_tick("daily", tick) is None
        runs = await queue.list()
        assert sorted(r.workflow for r in runs) == ["daily", "on-any-lead", "on-lead"]
