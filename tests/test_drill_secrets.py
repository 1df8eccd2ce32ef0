"""The secrets drill: the served runtime (receiver, signatures, catch-up, workers, guard,
audit), a bad signature, a wrong key and an eval report, with a known fake API key and the
webhook signature key; neither may appear in a log line, stdout or stderr, a store row
(but the signature key's own column), an error message, a report or a repr.

The console's pages and the MCP gateway's outputs are checked for the key by
tests/test_console_pages.py and tests/test_mcp_*.py (``Outputs.assert_no``). Every other
test runs under the same known keys and is scanned by the suite-wide plugin,
tests/_secrets.py; this drill is the one that drives every surface on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from sqlalchemy import MetaData, select

from closeguard.evals import RunOptions, build_report, find_suites, run_suites
from closeguard.evals.world import build_world
from closeguard.guardrails import Policy
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.store.cursors import Cursors
from closeguard.tools import CloseClient
from closeguard.tools.errors import CloseguardError
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.runtime import Runtime, RuntimeConfig
from tests._secrets import api_key

API_KEY = api_key("_drill")
POLICY = Policy.from_dict({"name": "drill-secrets", "grants": {"task": "write", "lead": "read"}})


async def welcome(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    ctx.log.info("welcoming %s", lead_id)
    await ctx.effect(
        "task",
        lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": "Welcome call"}),
    )


def _rows(store: Store, skip: set[tuple[str, str]]) -> list[str]:
    meta = MetaData()
    meta.reflect(store.engine)
    out: list[str] = []
    with store.engine.connect() as conn:
        for table in meta.sorted_tables:
            cols = [c for c in table.columns if (table.name, c.name) not in skip]
            out.extend(json.dumps(list(r), default=str) for r in conn.execute(select(*cols)))
    return out


async def _until(done: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_neither_key_appears_anywhere(
    store: Store, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = Simulator(seed=3, leads=2, api_keys=[API_KEY])
    flow = Workflow("welcome", EventTrigger("lead", "created"), POLICY, (welcome,))
    runtime = Runtime(
        [flow],
        store=store,
        checkpointer=InMemorySaver(),
        api_key=API_KEY,
        transport=sim.transport(),
        base_url=BASE_URL,
        config=RuntimeConfig(listen=("127.0.0.1", 0), subscribe=True, poll=0.05),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    seen: list[str] = []
    try:
        await asyncio.wait_for(runtime.ready.wait(), 20)
        runtime.feed.listeners.append(lambda a: seen.append(repr(a)))
        sim.webhooks.start()
        async with CloseClient(api_key=API_KEY, base_url=BASE_URL, transport=sim.transport()) as c:
            for name in ("Secret Co", "Hidden Ltd"):
                await c.leads.create({"name": name})
            seen.append(repr(c))
        await _until(lambda: sum("completed" in s for s in seen) >= 2, "two runs")
        assert runtime.receiver_url is not None
        async with httpx.AsyncClient() as raw:
            forged = await raw.post(
                runtime.receiver_url,
                content=b'{"event": {"id": "ev_x"}}',
                headers={"close-sig-hash": "00" * 32, "close-sig-timestamp": str(int(time.time()))},
            )
            seen.append(forged.text)
        assert forged.status_code in (400, 401, 403)
        async with CloseClient(
            api_key=API_KEY + "x", base_url=BASE_URL, transport=sim.transport()
        ) as bad:
            with pytest.raises(CloseguardError) as refused:
                await bad.leads.list()
        seen += [str(refused.value), repr(refused.value), repr(runtime)]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await sim.webhooks.stop()
    [sub] = Cursors(store).subscriptions()
    signature_key = sub.signature_key
    assert signature_key and signature_key not in repr(sub)

    suites = find_suites(["workflows"])
    eval_key = (await build_world(suites[0])).simulator(seed=0).api_key
    runs = await run_suites(suites, RunOptions(trials=1, concurrency=2))
    report = json.dumps(build_report(runs, RunOptions(), wall_seconds=1.0), default=str)

    out, err = capfd.readouterr()
    rows = _rows(store, {("webhook_subscriptions", "signature_key")})
    places = {
        "logs": [r.getMessage() for r in caplog.records] + [caplog.text],
        "stdout/stderr": [out, err],
        "store rows": rows,
        "activity, errors, reprs": seen,
    }
    assert len(rows) > 10 and len(caplog.records) > 0
    for secret in (API_KEY, signature_key):
        for where, texts in places.items():
            assert not [t for t in texts if secret in t], f"a key in the {where}"
    assert eval_key and eval_key not in report
