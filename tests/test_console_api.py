"""The approvals JSON API (401 / 403 / 404 / 409, items, audited decisions) and the
console's people: personal-token logins, roles on the cards, sessions kept in the store."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from closeguard.console import ConsoleConfig, build_console
from closeguard.console.security import Sessions
from closeguard.guardrails import Accounts, Approval, Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools.catalog import classify

TOKEN = "console-token-for-api-tests-0123456789"
ITEM_KEYS = {
    "id", "status", "endpoint", "method", "path", "args", "actor", "reason", "approvers",
    "created", "expires",
}  # fmt: skip


def _ask(
    approvals: Approvals, lead: str, roles: tuple[str, ...], ttl: float | None = None
) -> Approval:
    return approvals.request(
        classify("PUT", f"/lead/{lead}/", {"name": "Acme", "api_key": "sk-hidden"}),
        method="PUT",
        path=f"/lead/{lead}/",
        actor="bot",
        reason="lead.update needs approval",
        approvers=roles,
        ttl=ttl,
    )


def _decisions(store: Store) -> list[dict[str, Any]]:
    """The audit rows of decisions, their arguments decoded."""
    rows = [dict(r) for r in AuditLog(store).rows() if r["method"] == "DECIDE"]
    return [{**r, "args": json.loads(r["args"])} for r in rows]


class World:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.accounts = Accounts(store)
        self.approvals = Approvals(store)
        _, self.manager = self.accounts.add("maria", roles=["sales-manager"])
        _, self.rep = self.accounts.add("omar", roles=["rep"])
        _, self.gone = self.accounts.add("zoe", roles=["sales-manager"])
        self.accounts.disable("zoe")
        self.deal = _ask(self.approvals, "lead_1", ("sales-manager",))
        self.other = _ask(self.approvals, "lead_2", ("admin",))
        self.client = TestClient(build_console(ConsoleConfig(store=store, token=TOKEN)))

    def call(self, method: str, path: str, token: str | None, **kw: Any) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.client.request(method, path, headers=headers, **kw)


@pytest.fixture
def world(store: Store) -> World:
    return World(store)


def test_without_a_valid_personal_token_every_route_is_401(world: World) -> None:
    approve = f"/api/approvals/{world.deal.id}/approve"
    for token in (None, "nope", world.gone, TOKEN, world.manager + "x"):
        for method, path in (
            ("GET", "/api/approvals"),
            ("GET", f"/api/approvals/{world.deal.id}"),
            ("POST", approve),
        ):
            answer = world.call(method, path, token)
            assert answer.status_code == 401, (token, path)
            assert answer.headers["www-authenticate"].startswith("Bearer")
    cookie_only = world.client.post(approve, headers={"authorization": f"Basic {world.manager}"})
    assert cookie_only.status_code == 401
    assert world.approvals.get(world.deal.id).status == "pending"


def test_every_account_lists_and_reads_with_redacted_arguments(world: World) -> None:
    listed = world.call("GET", "/api/approvals", world.rep)
    assert listed.status_code == 200
    items = {i["id"]: i for i in listed.json()}
    assert set(items) == {world.deal.id, world.other.id}
    item = items[world.deal.id]
    assert ITEM_KEYS <= set(item)
    assert item["approvers"] == ["sales-manager"] and item["status"] == "pending"
    assert item["endpoint"] == "lead.update" and item["actor"] == "bot"
    assert "sk-hidden" not in listed.text
    one = world.call("GET", f"/api/approvals/{world.deal.id}", world.rep)
    assert one.status_code == 200 and one.json() == item
    assert world.call("GET", "/api/approvals/appr_nope", world.rep).status_code == 404
    assert world.call("GET", "/api/approvals?status=bogus", world.rep).status_code == 400
    assert world.call("GET", "/api/approvals?limit=0", world.rep).status_code == 400


def test_403_without_the_role_then_the_manager_decides_and_it_is_audited(world: World) -> None:
    path = f"/api/approvals/{world.deal.id}/approve"
    refused = world.call("POST", path, world.rep, json={"note": "looks fine"})
    assert refused.status_code == 403
    assert refused.json()["approvers"] == ["sales-manager"]
    assert world.approvals.get(world.deal.id).status == "pending"

    done = world.call("POST", path, world.manager, json={"note": "ok  by\nme"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "approved" and done.json()["decided_by"] == "maria"
    assert done.json()["note"] == "ok by me"
    [row] = _decisions(world.store)
    assert row["actor"] == "maria" and row["decision"] == "approved"
    assert row["approval_id"] == world.deal.id and row["reason"] == "ok by me"
    assert row["args"]["call_hash"] == world.deal.call_hash
    assert row["args"]["via"] == "token" and row["args"]["channel"] == "api"

    again = world.call("POST", f"/api/approvals/{world.deal.id}/reject", world.manager)
    assert again.status_code == 409 and "not pending" in again.json()["error"]


def test_409_when_expired_404_when_unknown_400_for_a_bad_body(world: World) -> None:
    late = _ask(world.approvals, "lead_3", ("rep",), ttl=0.0)
    assert world.call("POST", f"/api/approvals/{late.id}/reject", world.rep).status_code == 409
    assert world.call("POST", "/api/approvals/appr_nope/approve", world.rep).status_code == 404
    path = f"/api/approvals/{world.other.id}/reject"
    for body in ("{", '["note"]', '{"note": 5}', '{"other": 1}'):
        answer = world.call("POST", path, world.rep, content=body)
        assert answer.status_code == 400, body
    assert world.call("POST", f"/api/approvals/{world.other.id}/nod", world.rep).status_code == 404


def _field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no {name} field"
    return found[1]


def _login(client: TestClient, token: str, name: str = "") -> int:
    nonce = _field(client.get("/login").text, "csrf")
    answer = client.post(
        "/login", data={"token": token, "name": name, "csrf": nonce}, follow_redirects=False
    )
    return int(answer.status_code)


def test_a_rep_sees_the_card_but_cannot_answer_and_a_forged_post_is_403(world: World) -> None:
    client = world.client
    assert _login(client, world.rep) == 303
    page = client.get("/approvals").text
    assert world.deal.id in page and "omar" in page
    assert "Only someone with the role <strong>sales-manager</strong> can answer this" in page
    assert f'action="/approvals/{world.deal.id}/approve"' not in page
    csrf = _field(page, "csrf")
    forged = client.post(
        f"/approvals/{world.deal.id}/approve",
        data={"csrf": csrf, "call_hash": world.deal.call_hash, "comment": ""},
    )
    assert forged.status_code == 403
    assert world.approvals.get(world.deal.id).status == "pending"


def test_a_manager_logs_in_with_their_token_and_approves(world: World) -> None:
    client = world.client
    assert _login(client, world.manager, name="someone else") == 303
    page = client.get("/approvals").text
    assert f'action="/approvals/{world.deal.id}/approve"' in page
    answer = client.post(
        f"/approvals/{world.deal.id}/approve",
        data={"csrf": _field(page, "csrf"), "call_hash": world.deal.call_hash, "comment": "go"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    decided = world.approvals.get(world.deal.id)
    assert decided.status == "approved" and decided.decided_by == "maria"
    [row] = _decisions(world.store)
    assert row["args"]["via"] == "token" and row["args"]["channel"] == "console"
    assert "Approved" in client.get("/approvals").text, "the flash survives the store"


def test_the_shared_token_logs_in_as_admin_but_not_under_an_account_name(world: World) -> None:
    client = world.client
    assert _login(client, TOKEN, name="maria") == 400
    assert _login(client, TOKEN, name="Operator Olga") == 303
    page = client.get("/approvals").text
    assert f'action="/approvals/{world.other.id}/approve"' in page
    assert f'action="/approvals/{world.deal.id}/approve"' not in page


def test_sessions_live_in_the_store_and_a_disabled_account_is_logged_out(world: World) -> None:
    assert _login(world.client, world.rep) == 303
    cookie = world.client.cookies["cg_session"]
    other = TestClient(build_console(ConsoleConfig(store=world.store, token=TOKEN)))
    other.cookies.set("cg_session", cookie)
    assert other.get("/approvals", follow_redirects=False).status_code == 200
    with world.store.engine.connect() as conn:
        held = repr(conn.execute(world.store.tables.console_sessions.select()).all())
    assert cookie not in held, "only a hash of the session id is stored"
    world.accounts.disable("omar")
    assert other.get("/approvals", follow_redirects=False).status_code == 303
    assert world.client.get("/approvals", follow_redirects=False).status_code == 303


def test_a_session_s_repr_holds_neither_its_id_nor_its_csrf_token(store: Store) -> None:
    session = Sessions(store).open("maria", ("admin",), "token")
    shown = repr(session)
    assert "maria" in shown and session.id not in shown and session.csrf not in shown
