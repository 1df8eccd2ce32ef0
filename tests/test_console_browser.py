"""The console in a real headless browser (Debian's Chromium, driven by Playwright): log in,
watch a merge approval asked by a waiting duplicate-lead-merge run appear by itself, approve
it and see the run complete and the audit rows; reject another and see nothing change in
the simulator; a form post without the CSRF token and a wrong login token are refused.

With ``CLOSEGUARD_CONSOLE_SCREENSHOTS=DIR`` the pages are also saved as PNGs there (how
``docs/console-*.png`` are made)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from playwright import async_api as playwright_api

from closeguard.console import build_console, serve
from closeguard.guardrails import Approvals, AuditLog
from closeguard.simulator.core import BASE_URL
from closeguard.workflows.library.duplicate_lead_merge import WORKFLOW
from closeguard.workflows.runtime import Runtime, RuntimeConfig
from tests._browser import expect, launch
from tests._console import TOKEN, MergeOrg

WAIT_MS = 20_000
NAME = "Dana Manager"
SHOTS = os.environ.get("CLOSEGUARD_CONSOLE_SCREENSHOTS")


@pytest.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with launch() as browser:
        yield browser


async def shot(page: playwright_api.Page, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


async def log_in(page: playwright_api.Page, base: str, token: str = TOKEN) -> None:
    await page.goto(base + "/approvals")
    await expect(page).to_have_url(base + "/login?next=/approvals")
    await page.get_by_label("Your name").fill(NAME)
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Log in").click()


async def test_approve_one_merge_and_reject_another_in_the_browser(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    org = MergeOrg(tmp_path)
    runtime = Runtime(
        [WORKFLOW],
        store=org.store,
        checkpointer=InMemorySaver(),
        api_key=org.sim.api_key,
        transport=org.sim.transport(),
        base_url=BASE_URL,
        config=RuntimeConfig(roles=frozenset({"worker"}), poll=0.05, approvals_every=0.1),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        async with serve(build_console(org.config(poll=0.25))) as base:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await log_in(page, base)
            await expect(page).to_have_url(base + "/approvals")
            await expect(page.get_by_text("Nothing is waiting for a decision.")).to_be_visible()

            # a duplicate arrives while the page is open: the approval shows up by itself
            await runtime.inbox.add(await org.duplicate(), source="webhook")
            card = page.locator("article.approval")
            await expect(card).to_have_count(1, timeout=WAIT_MS)
            [pending] = Approvals(org.store).list("pending")
            assert pending.run_id is not None
            source = pending.args["body"]["source"]
            await expect(card).to_contain_text("lead.merge")
            await expect(card).to_contain_text("duplicate-lead-merge")
            await expect(card).to_contain_text(pending.run_id)
            await expect(card).to_contain_text(f"source lead {source}")
            await expect(card).to_contain_text("What will be different")
            await shot(page, "approvals")

            await card.get_by_label("Comment (optional)").fill("same buyer, web form duplicate")
            await card.get_by_role("button", name="Approve").click()
            await expect(page.locator(".flash")).to_contain_text(
                f"Approved lead.merge ({pending.id}) as {NAME}"
            )

            await page.goto(base + "/runs")
            row = page.locator("tr", has_text=pending.run_id)
            await expect(row.locator(".status")).to_have_text("completed", timeout=WAIT_MS)
            assert source not in org.sim.state["leads"]

            await page.goto(base + "/audit?endpoint=lead.merge")
            rows = page.locator("table.audit tbody tr")
            await expect(rows.filter(has_text=NAME)).to_have_count(1)
            guard_row = (
                rows.filter(has_text="duplicate-lead-merge")
                .filter(has_text="approved")
                .filter(has_not_text=NAME)  # the call, not the decision's own row
            )
            await expect(guard_row).to_have_count(1)
            await expect(page.locator(".verify")).to_contain_text("Chain verified")

            # the second duplicate is rejected: the organization stays as it was
            await page.goto(base + "/approvals")
            await runtime.inbox.add(await org.duplicate(), source="webhook")
            await expect(card).to_have_count(1, timeout=WAIT_MS)
            before = org.sim.snapshot()
            [second] = Approvals(org.store).list("pending")
            await card.get_by_role("button", name="Reject").click()
            await expect(page.locator(".flash")).to_contain_text(
                f"Rejected lead.merge ({second.id})"
            )
            await page.goto(base + "/runs")
            row = page.locator("tr", has_text=str(second.run_id))
            await expect(row.locator(".status")).to_have_text("rejected", timeout=WAIT_MS)
            assert org.sim.diff(before).empty
            decisions = [r["decision"] for r in AuditLog(org.store).rows() if r["actor"] == NAME]
            assert decisions == ["approved", "rejected"]
            await shot(page, "runs")
            await page.goto(base + "/audit")
            await shot(page, "audit")
    finally:
        stop.set()
        await task


async def test_a_wrong_token_and_a_post_without_csrf_are_refused(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    org = MergeOrg(tmp_path)
    run = await org.waiting()
    async with serve(build_console(org.config())) as base:
        page = await browser.new_page()
        await log_in(page, base, token="wrong-token")
        await expect(page.get_by_role("alert")).to_have_text("Wrong token.")
        await page.goto(base + "/approvals")
        await expect(page).to_have_url(base + "/login?next=/approvals")

        await log_in(page, base)
        await expect(page.locator("article.approval")).to_have_count(1)
        call_hash = await page.locator("input[name=call_hash]").input_value()
        forged = await page.request.post(
            f"{base}/approvals/{run.approval_id}/approve", form={"call_hash": call_hash}
        )
        assert forged.status == 403 and "CSRF" in await forged.text()
        approval = Approvals(org.store).get(run.approval_id or "")
        assert approval is not None and approval.status == "pending"
