"""Debian's Chromium under Playwright for the console's browser tests: one launch, shared.

``make test`` installs Chromium (``make browser``); without it the tests fail at import, never
skip.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from playwright import async_api as playwright_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    raise RuntimeError(f"the browser tests need Chromium at {CHROMIUM}: make test installs it")

expect = playwright_api.expect


@contextlib.asynccontextmanager
async def launch() -> AsyncIterator[playwright_api.Browser]:
    """A headless Chromium, closed when the block ends."""
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
