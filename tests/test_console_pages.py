"""The console's pages through Starlette's test client: login, CSRF, approvals bound to the
exact call and audited under the approver's name, runs and retry, the audit log's filters,
verification and export, and no secret on any page."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from markupsafe import escape as html_escape
from sqlalchemy import update
from starlette.testclient import TestClient

from closeguard.console import build_console, queries
from closeguard.guardrails import Approval, Approvals, AuditLog
from closeguard.store.runs import RunRows
from tests._console import TOKEN, MergeOrg

NAME = "Dana Manager"


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no {name} field"
    return found[1]


def login(client: TestClient, token: str = TOKEN, name: str = NAME) -> int:
    nonce = _field(client.get("/login").text, "csrf")
    answer = client.post(
        "/login", data={"token": token, "name": name, "csrf": nonce}, follow_redirects=False
    )
    return answer.status_code


@pytest.fixture
def org(tmp_path: Path) -> MergeOrg:
    return MergeOrg(tmp_path)


@pytest.fixture
def client(org: MergeOrg) -> TestClient:
    with TestClient(build_console(org.config())) as client:
        return client


def test_pages_need_a_login_and_a_wrong_token_is_refused(client: TestClient) -> None:
    for path in ("/approvals", "/runs", "/audit", "/audit/export.jsonl"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert client.get("/api/digest/approvals").status_code == 401
    assert login(client, token="not-the-token") == 401
    assert "cg_session" not in client.cookies
    assert client.get("/approvals", follow_redirects=False).status_code == 303

    page = client.get("/login")
    forged = client.post("/login", data={"token": TOKEN, "name": NAME, "csrf": "guess"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert "cg_session" not in client.cookies
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_login_sets_an_httponly_samesite_strict_session_cookie(client: TestClient) -> None:
    nonce = _field(client.get("/login").text, "csrf")
    answer = client.post(
        "/login", data={"token": TOKEN, "name": NAME, "csrf": nonce}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/approvals"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("cg_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/approvals")
    assert page.status_code == 200 and NAME in page.text
    assert login(client, name="   ") == 400, "a decision needs a name"


def test_a_pending_merge_shows_who_asks_the_call_and_both_leads_now(
    org: MergeOrg, client: TestClient
) -> None:
    run = asyncio.run(org.waiting())
    approval = Approvals(org.store).get(run.approval_id or "")
    assert approval is not None
    source, destination = approval.args["body"]["source"], approval.args["body"]["destination"]
    login(client)

    html = client.get("/approvals").text

    assert approval.id in html and "lead.merge" in html and "destructive" in html
    assert "workflow run" in html and "duplicate-lead-merge" in html and run.id in html
    assert approval.reason and str(html_escape(approval.reason)) in html
    assert f"source lead {source}" in html and f"destination lead {destination}" in html
    assert org.sim.state["leads"][destination]["display_name"] in html
    assert "merged away" in html
    after = r'<tr class="changed"><td>contacts</td><td>[^<]+</td><td>[^<]+, Dup</td></tr>'
    assert re.search(after, html), "the destination's contacts after the merge, beside now"
    consoles = [r for r in AuditLog(org.store).rows() if r["actor"] == "console"]
    assert {r["path"] for r in consoles} >= {
        f"/lead/{source}/",
        f"/lead/{destination}/",
    }
    assert all(r["access"] == "read" for r in consoles)
    for secret in (TOKEN, org.sim.api_key):
        for path in ("/approvals", "/runs", f"/runs/{run.id}", "/audit"):
            assert secret not in client.get(path).text


def test_approving_is_bound_to_the_call_audited_by_name_and_the_run_completes(
    org: MergeOrg, client: TestClient
) -> None:
    run = asyncio.run(org.waiting())
    approval_id = run.approval_id or ""
    login(client)
    page = client.get("/approvals").text
    csrf, digest = _field(page, "csrf"), client.get("/api/digest/approvals").json()["digest"]
    good = {"csrf": csrf, "call_hash": _field(page, "call_hash"), "comment": "same company"}

    forged = client.post(f"/approvals/{approval_id}/approve", data={**good, "csrf": ""})
    assert forged.status_code == 403
    other_call = client.post(f"/approvals/{approval_id}/approve", data={**good, "call_hash": "x"})
    assert other_call.status_code == 409
    assert Approvals(org.store).get(approval_id).status == "pending"  # type: ignore[union-attr]

    answer = client.post(f"/approvals/{approval_id}/approve", data=good, follow_redirects=False)

    assert answer.status_code == 303
    decided = Approvals(org.store).get(approval_id)
    assert decided is not None and decided.status == "approved"
    assert decided.decided_by == NAME and decided.note == "same company"
    assert client.get("/api/digest/approvals").json()["digest"] != digest
    assert f"Approved lead.merge ({approval_id}) as {NAME}" in client.get("/approvals").text
    [row] = [r for r in AuditLog(org.store).rows() if r["actor"] == NAME]
    assert row["decision"] == "approved" and row["approval_id"] == approval_id
    assert row["run_id"] == run.id and row["reason"] == "same company"

    again = client.post(f"/approvals/{approval_id}/reject", data=good)
    assert again.status_code == 409 and "not pending" in again.text

    [done] = asyncio.run(org.step())
    assert done.status == "completed"
    source = decided.args["body"]["source"]
    assert source not in org.sim.state["leads"]
    assert "completed" in client.get(f"/runs/{run.id}").text


def test_an_expired_approval_is_refused(org: MergeOrg, client: TestClient) -> None:
    run = asyncio.run(org.waiting())
    table = org.store.tables.approvals
    with org.store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == run.approval_id).values(expires=1.0))
    login(client)
    runs_page = client.get("/runs").text
    csrf = _field(runs_page, "csrf")
    approval = Approvals(org.store).get(run.approval_id or "")
    assert approval is not None and approval.status == "expired"
    data = {"csrf": csrf, "call_hash": approval.call_hash}
    answer = client.post(f"/approvals/{approval.id}/approve", data=data)
    assert answer.status_code == 409 and "expired" in answer.text


def test_a_rejection_leaves_the_org_as_it_was(org: MergeOrg, client: TestClient) -> None:
    run = asyncio.run(org.waiting())
    before = org.sim.snapshot()
    login(client)
    page = client.get("/approvals").text
    data = {"csrf": _field(page, "csrf"), "call_hash": _field(page, "call_hash")}
    assert client.post(f"/approvals/{run.approval_id}/reject", data=data).status_code == 200
    [done] = asyncio.run(org.step())
    assert done.status == "rejected"
    assert org.sim.diff(before).empty


def test_runs_show_dead_letters_and_retry_them(org: MergeOrg, client: TestClient) -> None:
    run = asyncio.run(org.waiting())
    table = org.store.tables.runs
    with org.store.engine.begin() as conn:
        conn.execute(
            update(table).where(table.c.id == run.id).values(status="dead", error="Close 503")
        )
    login(client)
    runs = client.get("/runs").text
    assert 'Dead-lettered <span class="count">1</span>' in runs and "Close 503" in runs
    detail = client.get(f"/runs/{run.id}").text
    assert "find_original" in detail and "merge" in detail and "Retry" in detail
    assert "POST /lead/merge/" in detail, "the gated call is among the run's calls"
    csrf = _field(detail, "csrf")

    assert client.post(f"/runs/{run.id}/retry", data={}).status_code == 403
    answer = client.post(f"/runs/{run.id}/retry", data={"csrf": csrf}, follow_redirects=False)

    assert answer.status_code == 303
    assert RunRows(org.store).get(run.id).status == "queued"  # type: ignore[union-attr]
    assert "queued again" in client.get(f"/runs/{run.id}").text
    assert client.get("/runs/run_nope").status_code == 404


def test_audit_filters_verifies_and_exports(org: MergeOrg, client: TestClient) -> None:
    asyncio.run(org.waiting())
    login(client)
    client.get("/approvals")  # the console reads the touched leads, as actor "console"
    report = AuditLog(org.store).verify()

    page = client.get("/audit").text
    assert "Chain verified" in page and f"{report.head_seq}:{report.head_hash}" in page

    only = client.get("/audit", params={"actor": "console"}).text
    assert "duplicate-lead-merge" not in only.split("<tbody>")[-1]
    gated = client.get("/audit", params={"decision": "approval_required"}).text
    assert "lead.merge" in gated.split("<tbody>")[-1]
    assert client.get("/audit", params={"since": "yesterday"}).status_code == 400
    future = client.get("/audit", params={"since": "2999-01-01"}).text
    assert "0 row(s)" in future

    export = client.get("/audit/export.jsonl", params={"actor": "console"})
    assert export.headers["content-disposition"].startswith("attachment")
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert rows and {r["actor"] for r in rows} == {"console"}
    assert all(len(r["hash"]) == 64 for r in rows)
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)


def test_a_tampered_chain_shows_as_failed(org: MergeOrg, client: TestClient) -> None:
    asyncio.run(org.waiting())
    table = org.store.tables.audit
    with org.store.engine.begin() as conn:
        conn.execute(update(table).where(table.c.seq == 1).values(path="/api/v1/elsewhere/"))
    login(client)
    assert "verification FAILED" in client.get("/audit").text


async def test_an_update_shows_each_field_now_and_after(org: MergeOrg) -> None:
    opp = next(iter(org.sim.state["opportunities"].values()))
    path = f"/api/v1/opportunity/{opp['id']}/"
    body = {"confidence": 95, "note": opp.get("note")}
    approval = Approval(
        "appr_x", "h", "pending", 0.0, 1e12, "opportunity.update", "PUT", path, "write",
        None, None, {"body": body, "params": {}},
    )  # fmt: skip
    [record] = await org.config().reader.touched(approval)  # type: ignore[union-attr]
    assert record.effect == "updated" and record.error is None
    changes = {c.field: (c.current, c.proposed, c.differs) for c in record.changes}
    assert changes == {
        "confidence": (opp["confidence"], 95, opp["confidence"] != 95),
        "note": (opp.get("note"), opp.get("note"), False),
    }


def test_wrong_tokens_are_throttled(client: TestClient) -> None:
    for _ in range(10):
        assert login(client, token="guess") == 401
    assert login(client) == 429, "even the right token waits once too many were wrong"


def test_a_login_redirects_only_within_the_site(client: TestClient) -> None:
    for target in ("//evil.example/", "/\\evil.example/", "https://evil.example/", "/runs"):
        nonce = _field(client.get("/login").text, "csrf")
        data = {"token": TOKEN, "name": NAME, "csrf": nonce, "next": target}
        answer = client.post("/login", data=data, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] == ("/runs" if target == "/runs" else "/approvals")


def test_the_live_digest_changes_when_approvals_arrive_or_are_answered_elsewhere(
    org: MergeOrg, client: TestClient
) -> None:
    login(client)

    def digest() -> str:
        return str(client.get("/api/digest/approvals").json()["digest"])

    empty = digest()
    assert digest() == empty, "stable while nothing happens"
    run = asyncio.run(org.waiting())
    arrived = digest()
    assert arrived != empty
    assert run.approval_id and run.approval_id in client.get("/approvals?partial=1").text
    Approvals(org.store).reject(run.approval_id, by="someone at the CLI")
    assert digest() not in (empty, arrived)
    partial = client.get("/approvals?partial=1").text
    assert partial.startswith('<section id="approvals"') and "someone at the CLI" in partial
    assert client.get("/api/digest/nothing").status_code == 404


def test_a_change_while_a_page_reads_its_rows_is_fetched_by_the_poller(
    org: MergeOrg, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run or approval that changes between the page's reads must leave the page's digest
    older than the store's, or the poller (which fetches only on a new digest) would keep
    the stale rows forever: how an approved run once stayed 'running' in the browser."""
    run = asyncio.run(org.waiting())
    assert run.approval_id is not None
    table = org.store.tables.runs
    login(client)

    def digest_in(html: str) -> str:
        found = re.search(r'data-digest="([0-9a-f]+)"', html)
        assert found is not None
        return found.group(1)

    real_overview, real_recent = queries.runs_overview, queries.recent

    def overview_then_completed(rows: RunRows) -> object:
        seen = real_overview(rows)
        with org.store.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == run.id).values(status="completed"))
        return seen

    monkeypatch.setattr(queries, "runs_overview", overview_then_completed)
    page = client.get("/runs").text
    now = client.get("/api/digest/runs").json()["digest"]
    assert digest_in(page) != now, "the page claims rows newer than it shows"
    assert "completed" in client.get("/runs?partial=1").text

    def recent_then_rejected(approvals: Approvals) -> object:
        seen = real_recent(approvals)
        approvals.reject(str(run.approval_id), by="someone at the CLI")
        return seen

    monkeypatch.setattr(queries, "recent", recent_then_rejected)
    page = client.get("/approvals").text
    assert digest_in(page) != client.get("/api/digest/approvals").json()["digest"]


def test_the_verification_is_redone_once_the_head_moves(org: MergeOrg, client: TestClient) -> None:
    asyncio.run(org.waiting())
    login(client)
    first = client.get("/audit").text
    assert "Chain verified" in first
    asyncio.run(org.waiting())  # new rows: a new head, so the chain is checked again
    report = AuditLog(org.store).verify()
    assert f"{report.head_seq}:{report.head_hash}" in client.get("/audit").text


def test_runs_show_skipped_runs_apart_from_failed_ones(org: MergeOrg, client: TestClient) -> None:
    run = asyncio.run(org.waiting())
    table = org.store.tables.runs
    reason = "lead lead_gone was deleted"
    with org.store.engine.begin() as conn:
        conn.execute(
            update(table).where(table.c.id == run.id).values(status="skipped", error=reason)
        )
    login(client)
    runs = client.get("/runs").text
    assert 'Skipped <span class="count">1</span>' in runs and reason in runs
    assert 'Dead-lettered <span class="count">0</span>' in runs
    assert '<span class="status skipped">skipped</span>' in runs
