"""Runs whose lead is merged or deleted before they run: they follow the merge to the
destination (once, even for a chain of merges), or end ``skipped`` with the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.store import Store
from closeguard.store.fates import LeadFates
from tests._wf_crm import Crm, of

FOLLOW_UP = "follow-up-on-status-change"
runner = CliRunner()


def two_leads(crm: Crm) -> tuple[str, str]:
    first, second = sorted(crm.sim.state["leads"])[:2]
    return first, second


async def deals_changed(crm: Crm, lead_id: str, count: int) -> list[str]:
    """``count`` new deals on the lead, each moved to a lost status: one follow-up run each
    queued (the events delivered). Their ids."""
    active = next(
        s["id"] for s in crm.sim.state["opportunity_statuses"].values() if s["type"] == "active"
    )
    lost = next(
        s["id"] for s in crm.sim.state["opportunity_statuses"].values() if s["type"] == "lost"
    )
    ids: list[str] = []
    events: list[dict[str, Any]] = []
    async with crm.client() as close:
        for i in range(count):
            opp = await close.opportunities.create(
                {"lead_id": lead_id, "status_id": active, "note": f"deal {i}"}
            )
            ids.append(opp.id)
    for opp_id in ids:
        events += await crm.act(
            lambda c, opp_id=opp_id: c.opportunities.update(opp_id, {"status_id": lost})
        )
    await crm.deliver([e for e in events if e["object_type"] == "opportunity"])
    assert len(await crm.runs(status="queued")) == count
    return ids


def follow_ups(crm: Crm, lead_id: str, opp_id: str) -> list[dict[str, Any]]:
    return [t for t in crm.tasks(lead_id) if f"({opp_id})" in str(t["text"])]


async def merge(crm: Crm, source: str, destination: str, *, deliver: bool = True) -> None:
    events = await crm.act(lambda c: c.leads.merge(source, destination))
    if deliver:
        await crm.deliver(events)


@pytest.mark.parametrize("queued", [1, 10, 100])
async def test_a_merge_while_runs_are_queued_lands_every_follow_up_once_on_the_destination(
    store: Store, queued: int
) -> None:
    crm = Crm(store, FOLLOW_UP)
    destination, source = two_leads(crm)
    deals = await deals_changed(crm, source, queued)

    await merge(crm, source, destination)
    runs = await crm.runs()
    assert {r.lead_id for r in runs} == {destination}  # queued in the destination's order
    await crm.drain(crm.workers(4 if queued > 1 else 1))

    runs = await crm.runs()
    assert [r.status for r in runs] == ["completed"] * queued, [r.error for r in runs]
    assert {r.lead_id for r in runs} == {destination}
    for deal in deals:
        assert len(follow_ups(crm, destination, deal)) == 1, deal
    assert all(t["lead_id"] != source for t in crm.sim.state["tasks"].values())


async def test_a_merge_the_intake_never_heard_of_is_found_by_the_run_itself(store: Store) -> None:
    crm = Crm(store, FOLLOW_UP)
    destination, source = two_leads(crm)
    deals = await deals_changed(crm, source, 3)
    await merge(crm, source, destination, deliver=False)  # the webhook was lost

    await crm.drain()

    runs = await crm.runs()
    assert [r.status for r in runs] == ["completed"] * 3, [r.error for r in runs]
    assert [r.attempts for r in runs] == [1, 1, 1]
    assert {r.lead_id for r in runs} == {destination}  # the run records where it went
    for deal in deals:
        assert len(follow_ups(crm, destination, deal)) == 1
    assert store.tables  # the merge is in the map now, for every later run
    assert LeadFates(store).resolve(source).lead == destination
    # one run asked Close (under lead-fates) what became of the lead; the others knew
    assert crm.sim.request_count["event.list"] == 1


@pytest.mark.parametrize("deliver", [True, False])
async def test_a_chain_of_merges_resolves_to_the_last_destination(
    store: Store, deliver: bool
) -> None:
    crm = Crm(store, FOLLOW_UP)
    final, middle, source = sorted(crm.sim.state["leads"])[:3]
    deals = await deals_changed(crm, source, 3)

    await merge(crm, source, middle, deliver=deliver)
    await merge(crm, middle, final, deliver=deliver)
    await crm.drain()

    runs = await crm.runs()
    assert [r.status for r in runs] == ["completed"] * 3, [r.error for r in runs]
    assert {r.lead_id for r in runs} == {final}
    for deal in deals:
        assert len(follow_ups(crm, final, deal)) == 1
    fate = LeadFates(store).resolve(source)
    assert fate.lead == final and fate.merged_from == (source, middle)


@pytest.mark.parametrize("deliver", [True, False])
async def test_runs_of_a_deleted_lead_end_skipped_without_retries(
    store: Store, deliver: bool
) -> None:
    crm = Crm(store, FOLLOW_UP)
    _, doomed = two_leads(crm)
    await deals_changed(crm, doomed, 3)
    events = await crm.act(lambda c: c.leads.delete(doomed))
    if deliver:
        await crm.deliver(events)
    writes_before = crm.sim.request_count["task.create"]

    await crm.drain()

    runs = await crm.runs()
    assert [r.status for r in runs] == ["skipped"] * 3
    assert [r.attempts for r in runs] == [1, 1, 1]
    assert {r.error for r in runs} == {f"lead {doomed} was deleted"}
    # knowing it, no run calls Close; not knowing it, the first run's write is refused and
    # it asks once why (the deletion is then known to the others)
    assert crm.sim.request_count["task.create"] == writes_before + (0 if deliver else 1)
    assert crm.sim.request_count["event.list"] == (0 if deliver else 1)

    listed = runner.invoke(app, ["runs", "list", "--status", "skipped", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"skipped"}
    assert {r["error"] for r in rows} == {f"lead {doomed} was deleted"}
    failed = runner.invoke(app, ["runs", "list", "--status", "failed", "--json"])
    assert json.loads(failed.stdout) == []


async def test_a_run_about_a_deleted_deal_is_skipped_and_its_lead_untouched(store: Store) -> None:
    crm = Crm(store, FOLLOW_UP)
    _, lead = two_leads(crm)
    [deal] = await deals_changed(crm, lead, 1)
    await crm.deliver(await crm.act(lambda c: c.opportunities.delete(deal)))

    await crm.drain()

    [run] = await crm.runs()
    assert (run.status, run.error) == ("skipped", f"opportunity {deal} was deleted")
    assert follow_ups(crm, lead, deal) == []


async def test_a_merged_run_shows_where_it_came_from(store: Store) -> None:
    crm = Crm(store, FOLLOW_UP)
    destination, source = two_leads(crm)
    await deals_changed(crm, source, 1)
    await merge(crm, source, destination)
    await crm.drain()
    [run] = await crm.runs()

    shown = runner.invoke(app, ["runs", "show", run.id, "--json"])

    data = json.loads(shown.stdout)
    assert (data["lead_id"], data["merged_from"]) == (destination, source)
    text = runner.invoke(app, ["runs", "show", run.id]).stdout
    assert f"merged from:  {source}" in text


async def test_merge_events_are_recorded_once_whichever_way_they_arrive(store: Store) -> None:
    crm = Crm(store, FOLLOW_UP)
    destination, source = two_leads(crm)
    events = await crm.act(lambda c: c.leads.merge(source, destination))
    assert of(events, "lead", "merged")["meta"]["merge_source_lead_id"] == source

    assert await crm.deliver(events) == len(events)
    assert await crm.inbox.add_many(events, source="catchup") == 0  # the inbox dedups

    fates = LeadFates(store)
    assert fates.merged_into(destination) == [source]
    assert fates.resolve(destination).merged_from == ()
    assert not fates.resolve(source).gone  # merged, not deleted
