"""Webhook subscription sync and paused-subscription recovery, against the simulator."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.cli import webhooks as webhooks_cli
from closeguard.guardrails import Guarded, Policy
from closeguard.simulator import Simulator
from closeguard.simulator.webhooks import PausePolicy
from closeguard.store import Store
from closeguard.store.cursors import Cursors
from closeguard.tools import CloseClient, FakeClock, UsageError
from closeguard.workflows.catchup import CatchUp
from closeguard.workflows.definition import EventTrigger, ManualTrigger, ScheduleTrigger, Workflow
from closeguard.workflows.loader import packaged_workflows
from closeguard.workflows.receiver import WebhookReceiver
from closeguard.workflows.subscriptions import (
    FATE_PAIRS,
    Subscriptions,
    event_pairs,
    intake_pairs,
    wants,
)

URL = "http://hooks.test/webhooks/close"
runner = CliRunner()


class MemoryInbox:
    def __init__(self) -> None:
        self.events: dict[str, Mapping[str, Any]] = {}
        self.sources: dict[str, str] = {}

    async def add(self, event: Mapping[str, Any], *, source: str) -> bool:
        if event["id"] in self.events:
            return False
        self.events[event["id"]], self.sources[event["id"]] = event, source
        return True

    async def add_many(self, events: Sequence[Mapping[str, Any]], *, source: str) -> int:
        return sum([await self.add(e, source=source) for e in events])


async def _noop(ctx: Any) -> None:
    return None


def workflow(name: str, trigger: Any) -> Workflow:
    return Workflow(name=name, trigger=trigger, policy="read-only", steps=(_noop,))


def intake(sim: Simulator, store: Store) -> CloseClient:
    guarded = Guarded(Policy.load("event-intake"), store=store)
    return sim.client(policy=guarded, actor="closeguard-intake")


def hooks(sim: Simulator) -> list[dict[str, Any]]:
    return list(sim.state["webhooks"].values())


def test_event_pairs_are_exactly_what_the_triggers_need() -> None:
    flows = [
        workflow("a", EventTrigger("opportunity", "updated", changed_fields=("status_id",))),
        workflow("b", EventTrigger("lead", ("created", "merged"))),
        workflow("c", EventTrigger("lead", "created")),
        workflow("d", ScheduleTrigger(cron="0 8 * * *")),
        workflow("e", ManualTrigger()),
    ]
    pairs = event_pairs(flows)
    assert pairs == (("lead", "created"), ("lead", "merged"), ("opportunity", "updated"))
    wanted = wants(pairs)
    assert wanted({"object_type": "lead", "action": "merged"})
    assert not wanted({"object_type": "lead", "action": "deleted"})


async def test_sync_creates_once_stores_the_key_and_changes_nothing_the_second_time(
    store: Store,
) -> None:
    sim = Simulator(seed=2, leads=1, clock=FakeClock())
    events = [("lead", "created"), ("opportunity", "updated")]
    subs = Subscriptions(intake(sim, store), Cursors(store), url=URL, events=events)
    first = await subs.sync()
    (hook,) = hooks(sim)
    assert (first.action, first.subscription_id) == ("created", hook["id"])
    assert {(e["object_type"], e["action"]) for e in hook["events"]} == set(events)
    (stored,) = Cursors(store).subscriptions()
    assert stored.signature_key == hook["signature_key"] and Cursors(store).signature_keys() == [
        hook["signature_key"]
    ]
    assert hook["signature_key"] not in repr(first) + repr(stored)

    before, writes = sim.state_hash(), sim.request_count["webhook.create"]
    again = await subs.sync()
    assert again.action == "unchanged" and again.subscription_id == hook["id"]
    assert sim.state_hash() == before and sim.request_count["webhook.create"] == writes
    assert sim.request_count["webhook.update"] == 0
    await subs.client.aclose()  # flushes the audit batch
    with store.engine.connect() as conn:
        audited = [str(row) for row in conn.execute(store.tables["audit"].select())]
    assert audited and not any(hook["signature_key"] in row for row in audited)


async def test_sync_updates_events_and_url_in_place(store: Store) -> None:
    sim = Simulator(seed=2, leads=1, clock=FakeClock())
    cursors = Cursors(store)
    await Subscriptions(intake(sim, store), cursors, url=URL, events=[("lead", "created")]).sync()
    (hook,) = hooks(sim)
    key = hook["signature_key"]
    moved = Subscriptions(
        intake(sim, store), cursors, url="https://new.example/hook", events=[("task", "completed")]
    )
    result = await moved.sync()
    (hook,) = hooks(sim)
    assert result.action == "updated" and hook["url"] == "https://new.example/hook"
    assert hook["events"] == [{"object_type": "task", "action": "completed"}]
    assert hook["signature_key"] == key and cursors.signature_keys() == [key]
    assert cursors.subscriptions()[0].events == (("task", "completed"),)
    assert (await moved.sync()).action == "unchanged"


async def test_a_subscription_deleted_in_close_is_created_again(store: Store) -> None:
    sim = Simulator(seed=2, leads=1, clock=FakeClock())
    cursors = Cursors(store)
    subs = Subscriptions(intake(sim, store), cursors, url=URL, events=[("lead", "created")])
    old = await subs.sync()
    async with sim.client() as owner:
        await owner.delete(f"/webhook/{old.subscription_id}/")
    new = await subs.sync()
    (hook,) = hooks(sim)
    assert new.action == "recreated" and new.subscription_id == hook["id"] != old.subscription_id
    assert cursors.signature_keys() == [hook["signature_key"]]


async def test_nothing_to_subscribe_to_is_a_usage_error(store: Store) -> None:
    sim = Simulator(seed=2, leads=1, clock=FakeClock())
    with pytest.raises(UsageError, match="nothing to subscribe"):
        await Subscriptions(intake(sim, store), Cursors(store), url=URL, events=[]).sync()
    assert hooks(sim) == []


class Switch:
    """An ASGI app answering 503 while ``down``, else passing to ``app``."""

    def __init__(self, app: Any) -> None:
        self.app, self.down = app, True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.down and scope["type"] == "http":
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


async def test_a_paused_subscription_is_reactivated_and_what_it_missed_caught_up(
    store: Store,
) -> None:
    clock = FakeClock()
    sim = Simulator(seed=4, leads=1, clock=clock)
    sim.webhooks.pause = PausePolicy(failing_for=600)
    cursors, inbox = Cursors(store), MemoryInbox()
    client = intake(sim, store)
    catchup = CatchUp(client, inbox, cursors, clock=clock, wanted=wants([("lead", "created")]))
    subs = Subscriptions(
        client, cursors, url=URL, events=[("lead", "created")], on_reactivated=catchup.run_once
    )
    await subs.sync()
    await catchup.run_once()
    switch = Switch(WebhookReceiver(inbox, cursors.signature_keys, clock=clock))
    sim.webhooks.mount("http://hooks.test", switch)
    assert await subs.ensure_active() is False, "active: nothing to do"

    async with sim.client() as owner:
        missed = [(await owner.post("/lead/", json={"name": "During outage"}))["id"]]
        await sim.webhooks.drain()  # every attempt fails for 10 minutes: Close pauses it
        (hook,) = hooks(sim)
        assert hook["status"] == "paused" and sim.webhooks.pauses
        missed.append((await owner.post("/lead/", json={"name": "While paused"}))["id"])
        await sim.webhooks.drain()
        assert inbox.events == {}

        switch.down = False
        assert await subs.ensure_active() is True
        assert hooks(sim)[0]["status"] == "active" and subs.reactivations == 1
        assert sorted(e["object_id"] for e in inbox.events.values()) == sorted(missed)
        assert set(inbox.sources.values()) == {"catchup"}

        live = (await owner.post("/lead/", json={"name": "After recovery"}))["id"]
        await sim.webhooks.drain()
    by_object = {e["object_id"]: inbox.sources[i] for i, e in inbox.events.items()}
    assert by_object[live] == "webhook" and len(inbox.events) == 3
    assert await subs.ensure_active() is False


def test_cli_sync_is_idempotent_and_never_prints_the_key(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sim = Simulator(seed=2, leads=1, clock=FakeClock())
    monkeypatch.setattr(webhooks_cli, "connect", lambda: intake(sim, store))
    first = runner.invoke(app, ["webhooks", "sync", "--url", URL])
    assert first.exit_code == 0, first.output
    (hook,) = hooks(sim)
    assert first.stdout.startswith(f"created: subscription {hook['id']} -> {URL}")
    expected = intake_pairs(packaged_workflows().values())
    assert set(FATE_PAIRS) <= set(expected)
    assert {(e["object_type"], e["action"]) for e in hook["events"]} == set(expected)

    again = runner.invoke(app, ["webhooks", "sync", "--url", URL, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)[0]["action"] == "unchanged"
    one = runner.invoke(app, ["webhooks", "sync", "--url", URL, "--workflows", "new-lead-triage"])
    assert one.stdout.startswith("updated:") and "lead.created" in one.stdout
    assert len(hooks(sim)) == 1 and sim.request_count["webhook.create"] == 1
    for result in (first, again, one):
        assert hook["signature_key"] not in result.output

    mine = tmp_path / "mine.py"
    mine.write_text(
        "from closeguard.workflows.definition import EventTrigger, Workflow\n"
        "async def step(ctx):\n    pass\n"
        "WORKFLOW = Workflow(name='mine', trigger=EventTrigger('task', 'completed'),"
        " policy='read-only', steps=(step,))\n"
    )
    own = runner.invoke(
        app, ["webhooks", "sync", "--url", URL, "-w", "mine", "--path", str(mine), "--json"]
    )
    assert own.exit_code == 0, own.output
    mine_pairs = sorted({("task", "completed"), *FATE_PAIRS})
    assert json.loads(own.stdout)[0]["events"] == [f"{o}.{a}" for o, a in mine_pairs]
    assert hooks(sim)[0]["events"] == [{"object_type": o, "action": a} for o, a in mine_pairs]

    unknown = runner.invoke(app, ["webhooks", "sync", "--url", URL, "--workflows", "nope"])
    assert unknown.exit_code == 2 and "no workflow nope" in unknown.output
