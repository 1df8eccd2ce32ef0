"""Telling people an approval waits: Apprise URLs, a reminder half-way to expiry.

``Notifier`` runs in the process that creates requests (``closeguard run``, ``chat``,
``mcp serve``): ``on_request`` hands it each new request, and it tells the people who can
answer it, through Apprise (Slack, Teams, email, ntfy, ... by URL):

- everyone's URLs: ``CLOSEGUARD_NOTIFY`` (space or comma separated);
- each enabled account holding one of the request's roles: its own ``notify`` URLs;
- with no URL at all, the ``terminal`` callback (the demo prints there).

The message says in sales words what is asked (``Describer``), who asks and why, when it
expires and where to answer it; never a key or a redacted argument (the arguments are
stored redacted, and the sentence names a masked field without its value). A failed
delivery is retried with backoff and logged; nothing here blocks or fails the run that
asked: the listener only queues. ``aclose`` delivers what is queued within a bound, so
a short-lived process tells people before it exits. A reminder goes out once per request
(whichever process claims it in the store) when it is half-way to expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import apprise

from closeguard.guardrails import Accounts, Approval, Approvals, on_request
from closeguard.notify.sentence import Describer
from closeguard.store import Store
from closeguard.store.reminders import ReminderRows

__all__ = ["Notice", "Notifier", "split_urls", "valid_url"]

log = logging.getLogger("closeguard.notify")
SENT_KEPT = 100
Kind = Literal["request", "reminder"]
_URL_START = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def split_urls(text: str | None) -> tuple[str, ...]:
    """Apprise URLs from ``CLOSEGUARD_NOTIFY``: split on spaces or commas that precede a
    new ``scheme://`` (a comma inside a URL's query, as in ``to=a@x,b@y``, stays)."""
    if not text:
        return ()
    return tuple(u.strip(" ,") for u in _URL_START.split(text.strip()) if u.strip(" ,"))


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Notice:
    """One message about one request, and where it goes."""

    approval_id: str
    kind: Kind
    title: str
    body: str
    urls: tuple[str, ...]


class Notifier:
    """Tells the people who can answer each new approval request (see the module doc)."""

    def __init__(
        self,
        store: Store,
        *,
        urls: Iterable[str] = (),
        console_url: str | None = None,
        describer: Describer | None = None,
        terminal: Callable[[str], None] | None = None,
        retries: int = 4,
        backoff: float = 1.0,
        remind_every: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.urls = tuple(urls)
        self.console_url = console_url.rstrip("/") if console_url else None
        self.describer = describer
        self.terminal = terminal
        self.retries = retries
        self.backoff = backoff
        self.remind_every = remind_every
        self.clock = clock
        self.accounts = Accounts(store)
        self.approvals = Approvals(store, clock=clock)
        self.reminders = ReminderRows(store)
        self.sent: deque[Notice] = deque(maxlen=SENT_KEPT)
        """The latest notices delivered to at least one place (for tests and status)."""
        self.failures = 0
        self._queue: asyncio.Queue[tuple[Kind, Approval]] = asyncio.Queue()
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._remove: Callable[[], None] | None = None

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> Notifier:
        """Listen for this process's requests; deliver and remind in the background."""
        self._loop = asyncio.get_running_loop()
        self._remove = on_request(self._on_request)
        self._tasks = [asyncio.create_task(self._work(), name="closeguard-notify")]
        if self.remind_every > 0:
            self._tasks.append(asyncio.create_task(self._remind(), name="closeguard-remind"))
        return self

    async def __aenter__(self) -> Notifier:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def drain(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109
        """Wait, at most ``timeout`` seconds, until everything queued is delivered (or has
        failed for good); False if time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
            while self._inflight:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                await asyncio.wait(set(self._inflight), timeout=left)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop listening, deliver what is queued within ``timeout``, then stop."""
        if self._remove is not None:
            self._remove()
            self._remove = None
        if not await self.drain(timeout):
            log.warning("notifications: gave up on %d undelivered", len(self._inflight))
        for task in [*self._tasks, *self._inflight]:
            task.cancel()
        for task in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _on_request(self, approval: Approval) -> None:
        """The ``on_request`` listener: runs on the requester's thread, only queues."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._queue.put_nowait, ("request", approval))

    # -- work ------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            kind, approval = await self._queue.get()
            try:
                notice = await self.notice(approval, kind)
                self._send(notice)
            except Exception:
                log.exception("notification for %s not built", approval.id)
            finally:
                self._queue.task_done()

    async def _remind(self) -> None:
        while True:
            await asyncio.sleep(self.remind_every)
            try:
                await self.remind_due()
            except Exception:
                log.exception("reminders: check failed")

    async def remind_due(self) -> list[str]:
        """Queue a reminder for each pending request past half-way to expiry that has had
        none (claimed in the store, so one process sends it); their ids."""
        now = self.clock()
        pending = await self.store.run(self.approvals.list, "pending", limit=500)
        due = [a for a in pending if now >= a.created + (a.expires - a.created) / 2]
        claimed = []
        for a in due:
            if await self.store.run(self.reminders.claim, a.id, now):
                claimed.append(a.id)
                self._queue.put_nowait(("reminder", a))
        return claimed

    async def recipients(self, approval: Approval) -> tuple[str, ...]:
        """Everyone's URLs, then those of each enabled account that can answer."""
        accounts = await self.store.run(self.accounts.list)
        own = [u for acc in accounts if acc.can_answer(approval.approvers) for u in acc.notify]
        return tuple(dict.fromkeys([*self.urls, *own]))

    async def notice(self, approval: Approval, kind: Kind = "request") -> Notice:
        """The message about ``approval`` and where it goes."""
        sentence = (
            await self.describer.sentence(approval)
            if self.describer is not None
            else approval.endpoint
        )
        remaining = max(0.0, approval.expires - self.clock())
        lead = "Approval needed" if kind == "request" else "Reminder: still waiting"
        title = f"{lead}: {sentence}"
        asker = approval.actor or "an agent"
        if approval.run_id:
            asker += f" (run {approval.run_id})"
        lines = [
            sentence,
            f"Asked by {asker}" + (f" under policy {approval.policy}" if approval.policy else ""),
            f"Why: {approval.reason or approval.rule or '-'}",
            f"Who can answer: {' or '.join(approval.approvers)}",
            f"Expires {_utc(approval.expires)} (in {_duration(remaining)})",
        ]
        if self.console_url:
            lines.append(f"Answer it: {self.console_url}/approvals#{approval.id}")
        lines.append(f"Or: closeguard approvals show {approval.id}")
        urls = await self.recipients(approval)
        return Notice(approval.id, kind, title, "\n".join(lines), urls)

    def _send(self, notice: Notice) -> None:
        if not notice.urls:
            if self.terminal is not None:
                details = notice.body.split("\n", 1)[1:]
                self.terminal("\n".join([notice.title, *details]))
                self.sent.append(notice)
            return
        for url in notice.urls:
            task = asyncio.create_task(self._deliver(notice, url))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, notice: Notice, url: str) -> None:
        """One URL, retried with backoff; a failure is logged (the URL's scheme only: the
        rest may hold a token)."""
        scheme = url.split("://", 1)[0]
        if not valid_url(url):
            self.failures += 1
            log.warning(
                "notification for %s: not an Apprise URL (%s://…)", notice.approval_id, scheme
            )
            return
        for attempt in range(self.retries + 1):
            if await _notify(url, notice.title, notice.body):
                if notice not in self.sent:
                    self.sent.append(notice)
                return
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * 2**attempt)
        self.failures += 1
        log.warning(
            "notification for %s to a %s:// URL failed after %d attempts",
            notice.approval_id,
            scheme,
            self.retries + 1,
        )


def valid_url(url: str) -> bool:
    """Whether Apprise understands ``url``."""
    return bool(apprise.Apprise().add(url))


async def _notify(url: str, title: str, body: str) -> bool:
    """One delivery through Apprise; False if it failed."""
    sender = apprise.Apprise()
    if not sender.add(url):
        return False
    try:
        return bool(
            await sender.async_notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        )
    except Exception:
        return False


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
