"""Enforcement at the transport: read-only, approvals, dry runs, quotas, lead scope, retries.

Behaviour runs against the in-process simulator (its request counter and Event Log prove
what reached it); MockTransport only where a scripted answer is needed (a 429 retry).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from closeguard.guardrails import (
    DRY_RUN_HEADER,
    Approvals,
    AuditLog,
    Guarded,
    GuardTransport,
    Policy,
)
from closeguard.guardrails.redact import redacted_json
from closeguard.guardrails.transport import _query
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import ENDPOINTS
from closeguard.tools.client import CloseClient
from closeguard.tools.clock import FakeClock
from closeguard.tools.errors import (
    ApprovalRequired,
    BadRequest,
    CloseAPIError,
    CloseguardError,
    NotFound,
    PolicyViolation,
)
from tests._secrets import api_key


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=3, leads=4)


async def first_lead(sim: Simulator) -> str:
    async with sim.client() as c:
        page = await c.get("/lead/")
    return str(page["data"][0]["id"])


def sample_body(ep_name: str, lead_id: str) -> dict[str, Any]:
    return (
        {"lead_id": lead_id, "name": "x", "status": "draft", "text": "t"}
        if ep_name.endswith(".create")
        else {"name": "y"}
    )


async def test_read_only_refuses_every_write_and_audits_each_attempt(
    store: Store, sim: Simulator
) -> None:
    lead = await first_lead(sim)
    writes = [ep for ep in ENDPOINTS if ep.access != "read"]
    before, events_before = sim.request_count["total"], len(sim.events)
    policy = Guarded(Policy.load("read-only"), store=store)
    async with sim.client(policy=policy, actor="reader", run_id="r-ro") as client:
        for ep in writes:
            path = ep.path.format(**{p: lead for p in ep.path_params})
            body = None if ep.method == "DELETE" else {"lead_id": lead, "name": "x"}
            with pytest.raises(PolicyViolation) as info:
                await client.request(ep.method, path, json=body)
            assert info.value.rule == (
                "deny[read-only.yaml:7]" if ep.resource == "webhook" else "grants.*"
            )
            assert info.value.decision.endpoint == ep.name
        # an email that would be sent is refused whatever its route
        with pytest.raises(PolicyViolation):
            await client.emails.create({"lead_id": lead, "status": "outbox", "to": ["a@b.c"]})
        assert (await client.leads.get(lead)).id == lead
    assert sim.request_count["total"] == before + 1
    assert len(sim.events) == events_before
    rows = AuditLog(store).tail(1000)
    denied = [r for r in rows if r["decision"] == "deny"]
    assert [r["endpoint"] for r in denied] == [ep.name for ep in writes] + ["activity.email.create"]
    assert all(r["actor"] == "reader" and r["run_id"] == "r-ro" for r in rows)
    assert rows[-1]["decision"] == "allow" and rows[-1]["status_code"] == 200
    assert AuditLog(store).verify().ok


async def test_unknown_endpoint_is_denied_not_crashed(store: Store, sim: Simulator) -> None:
    async with sim.client(policy=Guarded(Policy.load("sales-rep"), store=store)) as client:
        with pytest.raises(PolicyViolation) as info:
            await client.request("GET", "/secret_admin/")
    assert info.value.rule == "catalog"
    assert sim.request_count["total"] == 0


async def test_approval_flow(store: Store, sim: Simulator) -> None:
    lead = await first_lead(sim)
    approvals = Approvals(store)
    policy = Guarded(
        Policy.from_yaml("name: closer\ngrants: {'*': write}\napprove: [opportunity.create]\n"),
        store=store,
    )
    body = {"lead_id": lead, "value": 5000, "note": "deal"}
    async with sim.client(policy=policy, actor="closer", run_id="r1") as client:
        before = sim.request_count["total"]
        with pytest.raises(ApprovalRequired) as info:
            await client.opportunities.create(body)
        first_id = info.value.approval_id
        # asking again before anyone decides reuses the pending request
        with pytest.raises(ApprovalRequired) as again:
            await client.opportunities.create(body)
        assert again.value.approval_id == first_id
        assert sim.request_count["total"] == before
        pending = approvals.get(first_id)
        assert pending is not None and pending.status == "pending"
        assert pending.endpoint == "opportunity.create" and pending.args["body"]["value"] == 5000

        approvals.approve(first_id, by="manager", note="ok")
        created = await client.opportunities.create(body)
        assert created.value == 5000
        assert sim.request_count["total"] == before + 1
        consumed = approvals.get(first_id)
        assert consumed is not None and consumed.status == "consumed"

        # used up: the same call needs a new approval; other arguments too
        with pytest.raises(ApprovalRequired) as third:
            await client.opportunities.create(body)
        assert third.value.approval_id != first_id
        approvals.approve(third.value.approval_id, by="manager")
        with pytest.raises(ApprovalRequired) as other:
            await client.opportunities.create({**body, "value": 9999})
        assert other.value.approval_id != third.value.approval_id
        approvals.reject(other.value.approval_id, by="manager")
        with pytest.raises(ApprovalRequired):
            await client.opportunities.create({**body, "value": 9999})
    decisions = [
        r["decision"]
        for r in AuditLog(store).tail(20)
        if r["endpoint"] == "opportunity.create" and r["method"] != "DECIDE"
    ]
    assert decisions == [
        "approval_required",
        "approval_required",
        "approved",
        "approval_required",
        "approval_required",
        "approval_required",
    ]


async def test_expired_approval_cannot_be_used(store: Store, sim: Simulator) -> None:
    now = [1_000_000.0]
    approvals = Approvals(store, clock=lambda: now[0])
    policy = Policy.from_yaml("grants: {'*': write}\napprove: [write]\n")
    lead = await first_lead(sim)
    inner = sim.transport()
    transport = GuardTransport(inner, policy, store=store, approvals=approvals, actor="a")
    async with httpx.AsyncClient(
        transport=transport, base_url="https://api.close.com/api/v1", auth=(sim.api_key, "")
    ) as http:
        with pytest.raises(ApprovalRequired) as info:
            await http.post("/activity/note/", json={"lead_id": lead, "note": "n"})
        approvals.approve(info.value.approval_id, by="boss")
        now[0] += 25 * 3600
        with pytest.raises(ApprovalRequired) as again:
            await http.post("/activity/note/", json={"lead_id": lead, "note": "n"})
        assert again.value.approval_id != info.value.approval_id
        old = approvals.get(info.value.approval_id)
        assert old is not None and old.status == "expired"
        assert [a.id for a in approvals.list("expired")] == [info.value.approval_id]
    assert sim.request_count["total"] == 1  # only first_lead's read


async def test_wait_returns_when_a_person_decides(store: Store) -> None:
    import asyncio

    from closeguard.tools.catalog import classify

    approvals = Approvals(store)
    pending = approvals.request(
        classify("DELETE", "/lead/lead_1/"), method="DELETE", path="/lead/lead_1/"
    )

    async def decide() -> None:
        await asyncio.sleep(0)
        approvals.approve(pending.id, by="human")

    waiter = asyncio.create_task(approvals.wait(pending.id, timeout=5, poll=0.01))
    await decide()
    decided = await waiter
    assert decided.status == "approved" and decided.decided_by == "human"
    other = approvals.request(
        classify("DELETE", "/lead/lead_2/"), method="DELETE", path="/lead/lead_2/"
    )
    with pytest.raises(TimeoutError):
        await approvals.wait(other.id, timeout=0.02, poll=0.005)


async def test_dry_run_sends_no_write_and_fakes_the_answer(store: Store, sim: Simulator) -> None:
    lead = await first_lead(sim)
    policy = Policy.from_yaml(
        "name: rehearsal\nmode: dry_run\ngrants: {'*': destructive}\napprove: [lead.delete]\n"
    )
    before_hash, before_events = sim.state_hash(), len(sim.events)
    before_count = sim.request_count["total"]
    async with sim.client(policy=Guarded(policy, store=store), actor="rehearsal") as client:
        created = await client.leads.create({"name": "Dry Co", "contacts": [{"name": "Ann"}]})
        assert created.id.startswith("lead_") and created.name == "Dry Co"
        assert created.contacts[0].id.startswith("cont_")
        note = await client.notes.create({"lead_id": lead, "note": "hello"})
        assert note.id.startswith("acti_") and note.note == "hello"
        await client.leads.delete(lead)  # needs approval in enforce mode; faked here
        raw = await client._http.post(  # the marker header on the raw response
            "https://api.close.com/api/v1/task/", json={"lead_id": lead, "text": "t"}
        )
        assert raw.headers[DRY_RUN_HEADER] == "true"
        assert raw.json()["text"] == "t" and raw.json()["id"].startswith("task_")
        still = await client.leads.get(lead)  # reads are really sent
        assert still.id == lead
    assert sim.state_hash() == before_hash
    assert len(sim.events) == before_events
    assert sim.request_count["total"] == before_count + 1
    rows = AuditLog(store).tail(10)
    assert [r["decision"] for r in rows] == ["dry_run"] * 4 + ["allow"]
    assert "would ask approval" in rows[2]["reason"]


async def test_quotas_per_run_and_per_endpoint(store: Store, sim: Simulator) -> None:
    lead = await first_lead(sim)
    policy = Guarded(
        Policy.from_yaml(
            "grants: {'*': write}\nlimits:\n  per_run:\n    writes: 3\n"
            "    per_endpoint: {task.create: 2}\n"
        ),
        store=store,
    )
    async with sim.client(policy=policy, run_id="run-1") as client:
        await client.tasks.create({"lead_id": lead, "text": "1"})
        await client.tasks.create({"lead_id": lead, "text": "2"})
        with pytest.raises(PolicyViolation) as info:
            await client.tasks.create({"lead_id": lead, "text": "3"})
        assert info.value.rule == "limits.per_run.per_endpoint.task.create"
        await client.notes.create({"lead_id": lead, "note": "n"})
        with pytest.raises(PolicyViolation) as info:
            await client.notes.create({"lead_id": lead, "note": "n2"})
        assert info.value.rule == "limits.per_run.writes"
        await client.leads.get(lead)  # reads are not writes
    async with sim.client(policy=policy, run_id="run-2") as client:
        await client.tasks.create({"lead_id": lead, "text": "new run"})
    tasks = [e for e in sim.events if e["object_type"] == "task" and e["action"] == "created"]
    assert len(tasks) == 3


async def test_quota_per_window_is_shared_and_persisted(store: Store, sim: Simulator) -> None:
    lead = await first_lead(sim)
    text = (
        "name: windowed\ngrants: {'*': write}\nlimits:\n  per_window:\n    window: 1h\n"
        "    writes: 3\n"
    )
    for run in ("a", "b"):
        policy = Guarded(Policy.from_yaml(text), store=store)
        async with sim.client(policy=policy, run_id=run) as client:
            await client.notes.create({"lead_id": lead, "note": run})
    other_store = Store(store.url)  # another worker on the same database
    policy = Guarded(Policy.from_yaml(text), store=other_store)
    async with sim.client(policy=policy, run_id="c") as client:
        await client.notes.create({"lead_id": lead, "note": "c"})
        with pytest.raises(PolicyViolation) as info:
            await client.notes.create({"lead_id": lead, "note": "d"})
    assert info.value.rule == "limits.per_window.writes"
    other_store.dispose()


async def test_a_retried_call_counts_once_and_is_audited_per_attempt(store: Store) -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}, json={"error": {"rate_reset": 0}}),
            httpx.Response(200, json={"id": "task_1", "lead_id": "lead_1"}),
            httpx.Response(200, json={"id": "task_2", "lead_id": "lead_1"}),
        ]
    )
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return next(answers)

    policy = Policy.from_yaml(
        "grants: {task: write}\nlimits:\n  per_run: {per_endpoint: {task.create: 1}}\n"
    )
    client = CloseClient(
        api_key=api_key(),
        base_url="https://api.close.com/api/v1",
        transport=httpx.MockTransport(answer),
        policy=Guarded(policy, store=store),
        run_id="r",
        clock=FakeClock(),
    )
    async with client:
        await client.tasks.create({"lead_id": "lead_1", "text": "x"})
        with pytest.raises(PolicyViolation):
            await client.tasks.create({"lead_id": "lead_1", "text": "y"})
    assert len(seen) == 2
    rows = AuditLog(store).tail(10)
    assert [(r["attempt"], r["status_code"], r["decision"]) for r in rows] == [
        (1, 429, "allow"),
        (2, 200, "allow"),
        (1, None, "deny"),
    ]
    assert rows[0]["call_id"] == rows[1]["call_id"] != rows[2]["call_id"]


@pytest.mark.parametrize("failure", ["503", "no answer"])
async def test_a_write_close_failed_gives_its_per_run_units_back(
    store: Store, failure: str
) -> None:
    """A run retried after a 5xx (or no answer) is not refused by its failed attempt's units."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if len(sent) == 1:
            if failure == "no answer":  # sent, then lost: the client must not resend a write
                raise httpx.ReadError("connection lost", request=request)
            return httpx.Response(503, json={"error": "unavailable"})
        return httpx.Response(200, json={"id": f"task_{len(sent)}", "lead_id": "lead_1"})

    policy = Policy.from_yaml(
        "grants: {task: write}\nlimits:\n  per_run: {per_endpoint: {task.create: 1}}\n"
    )
    client = CloseClient(
        api_key=api_key(),
        base_url="https://api.close.com/api/v1",
        transport=httpx.MockTransport(answer),
        policy=Guarded(policy, store=store),
        run_id=f"r-{failure}",
        clock=FakeClock(),
    )
    async with client:
        with pytest.raises(CloseguardError):
            await client.tasks.create({"lead_id": "lead_1", "text": "x"})
        await client.tasks.create({"lead_id": "lead_1", "text": "x"})
        with pytest.raises(PolicyViolation) as info:
            await client.tasks.create({"lead_id": "lead_1", "text": "y"})
    assert info.value.rule == "limits.per_run.per_endpoint.task.create"
    assert len(sent) == 2


async def test_lead_scope_only_allows_triggered_leads(store: Store, sim: Simulator) -> None:
    async with sim.client() as c:
        leads = [x["id"] for x in (await c.get("/lead/"))["data"]]
    policy = Policy.load("follow-up-on-status-change")
    guarded = Guarded(policy, store=store, triggered_leads={leads[0]})
    async with sim.client(policy=guarded, actor="followup", run_id="wf-1") as client:
        await client.tasks.create({"lead_id": leads[0], "text": "follow up"})
        with pytest.raises(PolicyViolation) as info:
            await client.tasks.create({"lead_id": leads[1], "text": "not mine"})
        assert info.value.rule == "constraints.task.create.lead_id"
        with pytest.raises(PolicyViolation) as info:  # task.create limited to 1 per run
            await client.tasks.create({"lead_id": leads[0], "text": "again"})
        assert info.value.rule == "limits.per_run.per_endpoint.task.create"
        with pytest.raises(PolicyViolation):
            await client.notes.create({"lead_id": leads[0], "note": "no grant"})
    unscoped = Guarded(policy, store=store)
    async with sim.client(policy=unscoped, run_id="wf-2") as client:
        with pytest.raises(PolicyViolation, match="no triggered leads"):
            await client.tasks.create({"lead_id": leads[0], "text": "x"})


async def test_backend_errors_and_transport_failures_are_audited(store: Store) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/boom/"):
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(404, json={"error": "nope"})

    transport = GuardTransport(
        httpx.MockTransport(answer), Policy.load("read-only"), store=store, actor="t"
    )
    async with httpx.AsyncClient(
        transport=transport, base_url="https://api.close.com/api/v1"
    ) as http:
        assert (await http.get("/lead/lead_404/")).status_code == 404
        with pytest.raises(httpx.ConnectError):
            await http.get("/lead/boom/")
    rows = AuditLog(store).tail(2)
    assert rows[0]["status_code"] == 404 and rows[0]["error"] == "HTTP 404"
    assert rows[1]["status_code"] is None and "ConnectError" in rows[1]["error"]


async def test_secrets_never_reach_an_audit_row(store: Store, sim: Simulator) -> None:
    policy = Guarded(Policy.from_yaml("grants: {'*': destructive}\n"), store=store)
    async with sim.client(policy=policy) as client:
        hook = await client.request(
            "POST",
            "/webhook/",
            json={
                "url": "https://example.com/h",
                "events": [{"object_type": "lead", "action": "created"}],
            },
        )
        assert hook["signature_key"]
        with pytest.raises(CloseAPIError):
            await client.request(
                "PUT",
                "/lead/lead_nope/",
                json={"name": "n", "custom.cf_apitoken": "tok-123", "description": "d" * 5000},
            )
    dump = json.dumps(AuditLog(store).tail(10))
    assert sim.api_key not in dump
    assert hook["signature_key"] not in dump
    assert "tok-123" not in dump and "d" * 300 not in dump


@pytest.mark.parametrize(
    "query", ["lead_id=lead_1&_limit=5", "a=1&a=2&b=", "q=%C3%A9t%C3%A9+x&x=a%26b&api_key=s"]
)
def test_a_remembered_query_reads_as_httpx_reads_it(query: str) -> None:
    url = httpx.URL(f"https://api.close.com/api/v1/lead/?{query}")
    for _ in range(2):
        params, args = _query(url.query)
        assert params == dict(url.params)
        assert args == redacted_json({"body": {}, "params": dict(url.params)})


async def test_a_write_to_a_missing_object_gives_back_its_write_units_not_its_call(
    store: Store, sim: Simulator
) -> None:
    """Close refused it (the lead is gone: merged or deleted): nothing was written, so the
    run may still make the write on the lead the object went to; ``calls`` still counts."""
    lead = await first_lead(sim)
    policy = Guarded(
        Policy.from_yaml(
            "grants: {task: write, lead: destructive}\nlimits:\n  per_run:\n    calls: 3\n"
            "    per_endpoint: {task.create: 1}\n"
        ),
        store=store,
    )
    async with sim.client(policy=policy, run_id="run-gone") as client:
        with pytest.raises(BadRequest):
            await client.tasks.create({"lead_id": "lead_gone", "text": "x"})
        await client.tasks.create({"lead_id": lead, "text": "x"})
        with pytest.raises(PolicyViolation) as info:
            await client.tasks.create({"lead_id": lead, "text": "y"})
        assert info.value.rule == "limits.per_run.per_endpoint.task.create"
        with pytest.raises(NotFound):
            await client.leads.delete("lead_gone")
        with pytest.raises(PolicyViolation) as info:
            await client.leads.delete("lead_gone")
        assert info.value.rule == "limits.per_run.calls"


class _SearchGone(httpx.AsyncBaseTransport):
    """The simulator, except that a search is answered 404 (a read sent by POST)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/data/search/"):
            return httpx.Response(404, json={"error": "Object does not exist."})
        return await self.inner.handle_async_request(request)


async def test_a_read_by_post_answered_404_keeps_its_units(store: Store, sim: Simulator) -> None:
    """Only a write refused for a missing object gives units back (docs/architecture.md): a
    search is a read, whatever its method, so its per-endpoint limit holds."""
    policy = Guarded(
        Policy.from_yaml(
            "grants: {lead: read}\nlimits:\n  per_run:\n    per_endpoint:\n      {data.search: 1}\n"
        ),
        store=store,
    )
    query = {"query": {"type": "and", "queries": []}}
    transport = _SearchGone(sim.transport())
    async with sim.client(transport=transport, policy=policy, run_id="run-search") as client:
        with pytest.raises(NotFound):
            await client.post("/data/search/", json=query)
        with pytest.raises(PolicyViolation) as info:
            await client.post("/data/search/", json=query)
        assert info.value.rule == "limits.per_run.per_endpoint.data.search"
