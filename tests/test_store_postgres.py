"""The store on PostgreSQL (psycopg 3), in a schema of its own that is dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from closeguard.guardrails import Approvals, AuditLog, Guarded, Policy
from closeguard.guardrails.quotas import Quotas
from closeguard.store import Store
from closeguard.tools.catalog import classify
from closeguard.tools.errors import ApprovalRequired
from tests._pg import schema_store


@pytest.fixture
def pg_store() -> Iterator[Store]:
    with schema_store("cg_test_") as store:
        yield store


async def test_guard_on_postgres(pg_store: Store) -> None:
    assert pg_store.dialect == "postgresql"
    assert pg_store.engine.url.drivername == "postgresql+psycopg"
    log = AuditLog(pg_store, batch_size=2)
    for i in range(5):
        log.append(
            {
                "method": "GET",
                "path": f"/lead/{i}/",
                "decision": "allow",
                "args": {"n": i},
                "latency_us": i,
            }
        )
    log.flush()
    assert log.verify().ok and log.head()[0] == 5
    with pg_store.engine.begin() as conn:
        conn.execute(text(f"UPDATE \"{pg_store.schema}\".audit SET path = '/x/' WHERE seq = 2"))
    assert [(p.seq, p.kind) for p in log.verify().problems] == [(2, "hash")]

    policy = Policy.from_yaml(
        "name: pg\ngrants: {'*': write}\napprove: [task.create]\n"
        "limits:\n  per_window: {window: 1h, writes: 1}\n"
    )
    sent: list[str] = []
    transport = Guarded(policy, store=pg_store).wrap(
        httpx.MockTransport(lambda r: sent.append(r.url.path) or httpx.Response(200, json={})),
        actor="pg",
        run_id="r",
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://x/api/v1") as http:
        with pytest.raises(ApprovalRequired) as info:
            await http.post("/task/", json={"lead_id": "lead_1", "text": "t"})
        Approvals(pg_store).approve(info.value.approval_id, by="me")
        assert (await http.post("/task/", json={"lead_id": "lead_1", "text": "t"})).is_success
    assert sent == ["/api/v1/task/"]
    quotas = Quotas(policy, pg_store)
    assert quotas.window_count("writes") == 1
    assert (
        quotas.charge(call_id="other", run_id="r2", endpoint="task.create", access="write")
        == "limits.per_window.writes"
    )
    approval = Approvals(pg_store).get(info.value.approval_id)
    assert approval is not None and approval.status == "consumed"
    assert classify("GET", "/lead/").name == "lead.list"
