"""Organization facts read once per process, dropped by the events that change them or by
their TTL, and never served to a run whose policy would not let it read them; and the
runtime's knobs on ``closeguard run``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.cli import run as run_cli
from closeguard.guardrails import Policy
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.workflows import EventTrigger, Workflow
from closeguard.workflows.definition import Context
from closeguard.workflows.executor import RunSpec
from closeguard.workflows.facts import DEFAULT_TTL, OrgFacts
from closeguard.workflows.runtime import Runtime, RuntimeConfig
from tests._wf_crm import Crm, of

TRIAGE = "new-lead-triage"
FACT_READS = ("user.me", "organization.get", "custom_field.lead.list")
runner = CliRunner()


async def new_leads(crm: Crm, count: int) -> None:
    for i in range(count):
        await crm.deliver(await crm.act(lambda c, i=i: c.leads.create({"name": f"Lead {i}"})))


def fact_reads(crm: Crm) -> dict[str, int]:
    return {name: crm.sim.request_count[name] for name in FACT_READS}


async def test_facts_are_read_once_per_process_and_again_after_a_restart(store: Store) -> None:
    crm = Crm(store, TRIAGE, leads=2)
    await new_leads(crm, 5)
    await crm.drain(crm.workers(1))
    assert fact_reads(crm) == dict.fromkeys(FACT_READS, 1)

    await new_leads(crm, 2)
    await crm.drain(crm.workers(1))  # a new process: its own cache
    assert fact_reads(crm) == dict.fromkeys(FACT_READS, 2)
    assert all(r.status == "completed" for r in await crm.runs())


async def test_an_event_that_changes_a_fact_drops_the_cache_and_so_does_the_ttl(
    store: Store,
) -> None:
    crm = Crm(store, TRIAGE, leads=2)
    runtime = Runtime(
        crm.workflows.values(),
        store=store,
        checkpointer=InMemorySaver(),
        api_key=crm.sim.api_key,
        transport=crm.sim.transport(),
        base_url=BASE_URL,
        clock=crm.clock,
        config=RuntimeConfig(shared_budget=False, facts_ttl=300),
    )
    facts = runtime.executor.facts
    assert facts.ttl == 300
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    assert await facts.get("x", read) == 1 and await facts.get("x", read) == 1
    created = await crm.act(lambda c: c.leads.create({"name": "Not a fact"}))
    await runtime.inbox.add_many(created, source="webhook")
    assert await facts.get("x", read) == 1  # a lead changes no organization fact
    field = {
        "id": "ev_field",
        "object_type": "custom_field.lead",
        "object_id": "cf_1",
        "action": "created",
        "data": {},
    }
    await runtime.inbox.add(field, source="catchup")
    assert await facts.get("x", read) == 2
    crm.clock.advance(299)
    assert await facts.get("x", read) == 2
    crm.clock.advance(1)
    assert await facts.get("x", read) == 3  # the TTL ran out
    assert OrgFacts().ttl == DEFAULT_TTL


async def who_am_i(ctx: Context) -> None:
    ctx.state["me"] = (await ctx.facts.me()).id


async def test_a_run_is_served_a_cached_fact_only_if_its_policy_grants_that_read(
    store: Store,
) -> None:
    crm = Crm(store, leads=2)
    trigger = EventTrigger("lead", "created")
    allowed = Workflow(
        "reader", trigger, Policy.from_dict({"name": "r", "grants": {"user": "read"}}), (who_am_i,)
    )
    denied = Workflow(
        "other", trigger, Policy.from_dict({"name": "o", "grants": {"lead": "read"}}), (who_am_i,)
    )
    event = of(await crm.act(lambda c: c.leads.create({"name": "L"})), "lead", "created")
    executor = crm.executor()

    first = await executor.execute(allowed, RunSpec("run_1", "reader", event=event))
    again = await executor.execute(allowed, RunSpec("run_2", "reader", event=event))
    refused = await executor.execute(denied, RunSpec("run_3", "other", event=event))

    assert first.status == again.status == "completed"
    assert first.state["me"] == again.state["me"]
    assert crm.sim.request_count["user.me"] == 1
    assert refused.status == "failed" and "PolicyViolation" in str(refused.error)


def test_run_takes_the_runtime_knobs_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSEGUARD_MODEL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    seen: list[RuntimeConfig] = []

    async def serve(workflows: Any, target: Any, config: RuntimeConfig, **_: Any) -> Counter[str]:
        seen.append(config)
        return Counter()

    monkeypatch.setattr(run_cli, "_serve", serve)
    args = ["run", "--console", "off", "--catch-up-every", "15", "--upkeep-every", "120"]
    result = runner.invoke(app, [*args, "--lease", "30"])
    assert result.exit_code == 0, result.output
    [config] = seen
    assert (config.catchup_every, config.subscription_every, config.lease) == (15, 120, 30)

    default = runner.invoke(app, ["run", "--console", "off"])
    assert default.exit_code == 0, default.output
    assert (seen[1].catchup_every, seen[1].subscription_every, seen[1].lease) == (60, 60, 60)

    bad = runner.invoke(app, ["run", "--lease", "1"])
    assert bad.exit_code == 2 and "--lease" in bad.output
