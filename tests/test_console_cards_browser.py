"""The console in sales language, in a real headless browser (Debian's Chromium, driven by
Playwright): each card leads with a sentence built from the records, for an update, a
merge and a send; the raw call is folded under "details"; a merge leaving two contacts of
one name shows the change; runs and audit rows name leads beside ids; the Runs page's
error column is readable at 1280, 1600 and 1920 px.

With ``CLOSEGUARD_CONSOLE_SCREENSHOTS=DIR`` the update card is saved as
``DIR/console-card.png`` (how ``docs/console-approvals.png`` is made).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright import async_api as playwright_api

from closeguard.console import ConsoleConfig, Reader, build_console, serve
from closeguard.guardrails import Approval, Approvals
from closeguard.notify import money
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.store import Store
from closeguard.store.runs import RunRows
from closeguard.tools.catalog import classify
from tests._browser import expect, launch

TOKEN = "console-token-for-card-tests-0123456789"
SHOTS = os.environ.get("CLOSEGUARD_CONSOLE_SCREENSHOTS")
ERROR = (
    "CloseAPIError: POST /task/ answered 422: lead_id refers to a lead that was merged into "
    "another one meanwhile; the run's event is older than the merge"
)


@pytest.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with launch() as browser:
        yield browser


class Org:
    """Acme Robotics and its web-form duplicate (each with a contact Omar Okoye), a deal
    'Expansion', and three pending approvals: move the deal to Won, merge the duplicate,
    send an email."""

    def __init__(self, tmp_path: Path) -> None:
        self.sim = Simulator(seed=7, leads=6)
        self.store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        self.approvals = Approvals(self.store)

    async def build(self) -> dict[str, Any]:
        omar = {"name": "Omar Okoye", "emails": [{"email": "omar@acme.example"}]}
        async with self.sim.client() as close:
            acme = await close.leads.create({"name": "Acme Robotics", "contacts": [omar]})
            dup = await close.leads.create(
                {"name": "Acme Robotics (web form)", "contacts": [{"name": "Omar Okoye"}]}
            )
            deal = await close.post(
                "/opportunity/", json={"lead_id": acme.id, "note": "Expansion", "value": 24_000_000}
            )
            statuses = (await close.get("/status/opportunity/"))["data"]
        won = next(s["id"] for s in statuses if s["type"] == "won")
        update = self._ask("PUT", f"/opportunity/{deal['id']}/", {"status_id": won})
        merge = self._ask("POST", "/lead/merge/", {"source": dup.id, "destination": acme.id})
        send = self._ask(
            "POST",
            "/activity/email/",
            {
                "lead_id": acme.id,
                "status": "outbox",
                "to": ["omar@acme.example"],
                "subject": "Renewal terms",
            },
        )
        return {"acme": acme.id, "update": update, "merge": merge, "send": send}

    def _ask(self, method: str, path: str, body: dict[str, Any]) -> Approval:
        return self.approvals.request(
            classify(method, path, body),
            method=method,
            path=path,
            actor="deal-desk-bot",
            reason="needs approval",
            approvers=("admin",),
        )

    def console(self) -> Any:
        reader = Reader(
            self.store, api_key=self.sim.api_key, base_url=BASE_URL, transport=self.sim.transport()
        )
        return build_console(ConsoleConfig(store=self.store, token=TOKEN, reader=reader, poll=60))


async def log_in(page: playwright_api.Page, base: str) -> None:
    await page.goto(base + "/login?next=/approvals")
    await page.locator("input[name=token]").fill(TOKEN)
    await page.locator("input[name=name]").fill("Dana Manager")
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(base + "/approvals")


async def test_cards_lead_with_a_sentence_built_from_the_records(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    org = Org(tmp_path)
    made = await org.build()
    async with serve(org.console()) as base:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await log_in(page, base)

        update = page.locator(f"#{made['update'].id}")
        await expect(update.locator("h3.sentence")).to_have_text(
            f"Move Acme Robotics' 'Expansion' deal to Won, {money(24_000_000, 'USD')}"
        )
        assert money(24_000_000, "USD") == "240,000 USD"
        status = update.locator("table.diff tr.changed")
        await expect(status).to_have_text(["status Discovery Won"], use_inner_text=True)
        await expect(update).to_contain_text("Acme Robotics' 'Expansion' deal")
        raw = update.locator("details.raw")
        await expect(raw.locator("pre.args")).to_be_hidden()
        await raw.locator("summary").click()
        await expect(raw.locator("pre.args")).to_be_visible()
        await expect(raw).to_contain_text("opportunity.update")
        if SHOTS:
            await raw.locator("summary").click()
            await update.screenshot(path=str(Path(SHOTS) / "console-card.png"))

        merge = page.locator(f"#{made['merge'].id}")
        await expect(merge.locator("h3.sentence")).to_have_text(
            "Merge lead Acme Robotics (web form) into Acme Robotics (the source lead is deleted)"
        )
        after = merge.locator("table.diff tr.changed", has_text="Omar Okoye, Omar Okoye")
        await expect(after).to_have_count(1)
        await expect(after.locator("td").nth(1)).to_have_text("Omar Okoye")

        send = page.locator(f"#{made['send'].id}")
        await expect(send.locator("h3.sentence")).to_have_text(
            "Send an email to omar@acme.example on Acme Robotics: 'Renewal terms'"
        )

        await page.goto(base + "/audit")
        named = page.locator("table.audit .named", has_text="Acme Robotics")
        await expect(named.first).to_be_visible()


async def test_the_runs_page_names_leads_and_has_room_for_errors(
    tmp_path: Path, browser: playwright_api.Browser
) -> None:
    org = Org(tmp_path)
    made = await org.build()
    runs = RunRows(org.store)
    for i in range(3):
        runs.enqueue(
            [
                {
                    "id": f"run_{i:02d}{'x' * 20}",
                    "workflow": "follow-up-on-status-change",
                    "trigger_key": f"ev_{i:02d}{'Q' * 30}",
                    "kind": "event",
                    "payload": {},
                    "lead_id": made["acme"],
                }
            ]
        )
        runs.settle(f"run_{i:02d}{'x' * 20}", None, status="dead", error=ERROR)
    async with serve(org.console()) as base:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await log_in(page, base)
        for width in (1280, 1600, 1920):
            await page.set_viewport_size({"width": width, "height": 900})
            await page.goto(base + "/runs")
            row = page.locator("tr", has_text="run_00").first
            await expect(row.locator("td.lead")).to_contain_text("Acme Robotics")
            box = await row.locator("td.err").bounding_box()
            assert box is not None and box["width"] >= 200, (width, box)
            table = await page.locator("table.list").first.bounding_box()
            assert table is not None and table["x"] + table["width"] <= width, (width, table)
        await row.locator("a").first.click()
        await expect(page.locator("dl.facts")).to_contain_text(f"Acme Robotics {made['acme']}")
