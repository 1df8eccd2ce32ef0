"""The sales sentence of each kind of call, built from the records the simulator holds; a
masked argument is named, never shown; an unreadable record is named by its id."""

from __future__ import annotations

from typing import Any

import pytest

from closeguard.guardrails import Approval, Approvals, Guarded, Policy
from closeguard.notify import Describer
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools.catalog import classify


@pytest.fixture
async def world(store: Store) -> dict[str, Any]:
    sim = Simulator(seed=5, leads=3)
    async with sim.client() as close:
        lead = await close.leads.create(
            {"name": "Globex", "contacts": [{"name": "Hank Scorpio"}, {"name": "Frank Grimes"}]}
        )
        full = await close.get(f"/lead/{lead.id}/")
        qualified = next(
            s for s in (await close.get("/status/lead/"))["data"] if s["label"] == "Qualified"
        )
        user = (await close.get("/user/"))["data"][0]
        deal = await close.post("/opportunity/", json={"lead_id": lead.id, "value": 1_250_050})
    read_only = Guarded(Policy.load("read-only"), store=store)
    describer = Describer(lambda: sim.client(policy=read_only, actor="console"))
    return {
        "describer": describer,
        "store": store,
        "lead": lead.id,
        "contact": full["contacts"][0]["id"],
        "qualified": qualified["id"],
        "user": user,
        "deal": deal["id"],
    }


def _approval(store: Store, method: str, path: str, body: dict[str, Any] | None = None) -> Approval:
    return Approvals(store).request(classify(method, path, body), method=method, path=path)


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("PUT", "/lead/{lead}/", {"status_id": "{qualified}"}, "Move lead Globex to Qualified"),
        (
            "PUT",
            "/lead/{lead}/",
            {"name": "Globex Corp", "status_id": "{qualified}"},
            "Rename lead Globex to Globex Corp; move it to Qualified",
        ),
        ("DELETE", "/lead/{lead}/", None, "Delete lead Globex with its 2 contacts and 1 deals"),
        (
            "PUT",
            "/opportunity/{deal}/",
            {"value": 9_900_000},
            "Change Globex's deal from 12,500.50 USD to 99,000 USD",
        ),
        (
            "PUT",
            "/opportunity/{deal}/",
            {"user_id": "{user_id}", "confidence": 80},
            "Update Globex's deal (12,500.50 USD); confidence 80%; assign it to {user_name}",
        ),
        ("DELETE", "/opportunity/{deal}/", None, "Delete Globex's deal, 12,500.50 USD"),
        ("DELETE", "/contact/{contact}/", None, "Delete contact Hank Scorpio of Globex"),
        (
            "PUT",
            "/lead/{lead}/",
            {"description": "x", "custom.api_key": "sk-123"},
            "Update lead Globex; set custom.api_key; set description to 'x'",
        ),
        ("DELETE", "/task/task_gone/", None, "Delete a task"),
    ],
)
async def test_sentences(
    world: dict[str, Any], method: str, path: str, body: dict[str, Any] | None, expected: str
) -> None:
    values = {
        "lead": world["lead"],
        "deal": world["deal"],
        "contact": world["contact"],
        "qualified": world["qualified"],
        "user_id": world["user"]["id"],
        "user_name": world["user"]["display_name"],
    }
    path = path.format(**values)
    if body is not None:
        body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}
    approval = _approval(world["store"], method, path, body)
    sentence = await world["describer"].sentence(approval)
    assert sentence == expected.format(**values)
    assert "sk-123" not in sentence


async def test_names_of_leads_and_users_are_read_once(world: dict[str, Any]) -> None:
    describer: Describer = world["describer"]
    user = world["user"]
    ids = [world["lead"], user["id"], "lead_missing", "cont_x"]
    assert await describer.names(ids) == {world["lead"]: "Globex", user["id"]: user["display_name"]}
    assert await describer.names(ids) == {world["lead"]: "Globex", user["id"]: user["display_name"]}
    reads = [path for path in describer._cache if path.startswith(("/lead/", "/user/"))]
    assert sorted(reads) == sorted(
        [f"/lead/{world['lead']}/", f"/user/{user['id']}/", "/lead/lead_missing/"]
    )
