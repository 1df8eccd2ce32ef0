"""People in a real headless browser: a rep logs in with their personal token and sees a
deal change they cannot answer (the card says which role can); a sales manager logs in
with theirs and approves it, recorded under their name as a decision of its own."""

from __future__ import annotations

import json
from pathlib import Path

from playwright import async_api as playwright_api

from closeguard.console import ConsoleConfig, build_console, serve
from closeguard.guardrails import Accounts, Approvals, AuditLog
from closeguard.store import Store
from closeguard.tools.catalog import classify
from tests.test_console_browser import browser, expect, shot

__all__ = ["browser"]  # the fixture, shared with the other browser tests

TOKEN = "console-token-for-people-tests-0123456789"


async def _log_in(page: playwright_api.Page, base: str, token: str) -> None:
    await page.goto(base + "/approvals")
    await expect(page).to_have_url(base + "/login?next=/approvals")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(base + "/approvals")


async def test_a_rep_cannot_approve_and_a_manager_can(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    accounts = Accounts(store)
    _, rep = accounts.add("omar", roles=["rep"])
    _, manager = accounts.add("maria", roles=["sales-manager"])
    asked = Approvals(store).request(
        classify("PUT", "/opportunity/oppo_1/", {"value": 24000000, "status_type": "won"}),
        method="PUT",
        path="/opportunity/oppo_1/",
        actor="deal-desk",
        reason="opportunity.update needs approval",
        approvers=("sales-manager",),
    )
    async with serve(build_console(ConsoleConfig(store=store, token=TOKEN, poll=0.25))) as base:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await _log_in(page, base, rep)
        card = page.locator("article.approval")
        await expect(card).to_have_count(1)
        await expect(card).to_contain_text("opportunity.update")
        await expect(card.locator(".cannot")).to_contain_text(
            "Only someone with the role sales-manager can answer this"
        )
        await expect(card.locator(".cannot")).to_contain_text("omar (rep)")
        await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
        await shot(page, "rep-cannot-approve")
        await page.close()

        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await _log_in(page, base, manager)
        card = page.locator("article.approval")
        await expect(card.locator(".cannot")).to_have_count(0)
        await card.get_by_label("Comment (optional)").fill("signed contract attached")
        await card.get_by_role("button", name="Approve").click()
        await expect(page.locator(".flash")).to_contain_text("as maria")
        await expect(page.locator("article.approval")).to_have_count(0)
        await page.close()

    decided = Approvals(store).get(asked.id)
    assert decided is not None and decided.status == "approved"
    assert decided.decided_by == "maria" and decided.note == "signed contract attached"
    [row] = [r for r in AuditLog(store).rows() if r["method"] == "DECIDE"]
    assert row["actor"] == "maria" and row["decision"] == "approved"
    assert json.loads(row["args"])["via"] == "token"
