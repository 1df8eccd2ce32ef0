"""The notifier of a CLI process that asks for approvals (``run``, ``workflows run``,
``mcp serve``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx

from closeguard.cli._common import fail
from closeguard.console import Reader
from closeguard.notify import Notifier, split_urls, valid_url
from closeguard.store import Store
from closeguard.tools import Settings

__all__ = ["REMIND_EVERY", "notified", "notify_urls", "notifying"]

REMIND_EVERY = 30.0
"""Seconds between looks for requests half-way to expiry, in a long-lived process."""


def notify_urls(settings: Settings) -> tuple[str, ...]:
    """``CLOSEGUARD_NOTIFY``'s Apprise URLs; a one-line error naming a bad one by position
    and scheme (the rest of a URL may hold a token)."""
    raw = settings.notify.get_secret_value() if settings.notify is not None else None
    urls = split_urls(raw)
    for i, url in enumerate(urls, 1):
        if not valid_url(url):
            scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
            raise fail(
                f"CLOSEGUARD_NOTIFY: URL {i} of {len(urls)} ({scheme}://...) is not an "
                "Apprise URL (see https://github.com/caronc/apprise/wiki)",
                2,
            )
    return urls


async def notified(
    work: Coroutine[Any, Any, None],
    store: Store,
    *,
    api_key: str | None,
    base_url: str | None,
    transport: httpx.AsyncBaseTransport | None,
    say: Callable[[str], None],
    remind: bool = False,
) -> None:
    """Await ``work`` inside ``notifying`` (for ``asyncio.run``)."""
    try:
        async with notifying(
            store, api_key=api_key, base_url=base_url, transport=transport, say=say, remind=remind
        ):
            await work
    finally:
        work.close()  # no-op once awaited; else (a bad CLOSEGUARD_NOTIFY) it never ran


@contextlib.asynccontextmanager
async def notifying(
    store: Store,
    *,
    api_key: str | None,
    base_url: str | None,
    transport: httpx.AsyncBaseTransport | None,
    say: Callable[[str], None],
    remind: bool = False,
) -> AsyncIterator[Notifier]:
    """Tell people of the approvals this process asks for while the block runs; on leaving
    it, deliver what is queued (within the notifier's bound) before the process exits.
    ``remind``: a long-lived process also sends the reminders half-way to expiry.
    Without ``api_key`` (OAuth) the records are not read: messages name the endpoint."""
    reader = (
        Reader(store, api_key=api_key, base_url=base_url, transport=transport) if api_key else None
    )
    notifier = Notifier(
        store,
        urls=notify_urls(Settings()),
        describer=reader.describer if reader is not None else None,
        terminal=lambda text: say(f"notify: {text}"),
        remind_every=REMIND_EVERY if remind else 0,
    )
    async with notifier:
        yield notifier
