"""``closeguard run``: the workflow runtime in one process, with a live view.

With ``CLOSE_API_KEY`` it works on your Close organization: the receiver listens on
``--listen``, and with ``--public-url`` (how Close reaches it) the webhook subscription is
synced and kept active; Event Log catch-up, schedules and workers run beside it. Without a
key it starts an embedded simulated organization (its own store in the data dir), points
the simulator's webhooks at the receiver and drives a little sales activity, so the
workflows visibly fire. It stops at ``--duration`` or on Ctrl-C, letting runs in progress
finish (a second Ctrl-C stops at once; checkpoints keep what was done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from langchain_core.language_models import BaseChatModel
from rich.console import Console

from closeguard.agent import resolve_model
from closeguard.agent.runtime import open_store_checkpointer
from closeguard.cli._common import LogFormatOpt, fail, start_serving
from closeguard.cli._demo import DemoDriver
from closeguard.cli._live import LiveView, PlainView
from closeguard.cli._notify import notify_urls
from closeguard.cli.console import DEFAULT_CONSOLE, open_console, parse_console
from closeguard.cli.workflows import PathOpt, WorkflowsOpt, enabled_workflows
from closeguard.console import Reader
from closeguard.notify import Notifier
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL as SIM_BASE_URL
from closeguard.store import Store, default_store
from closeguard.telemetry import Probes
from closeguard.tools import Settings
from closeguard.tools.errors import ConfigError
from closeguard.tools.settings import default_data_dir
from closeguard.workflows.activity import Activity, Feed
from closeguard.workflows.context import RUN_LOGGER
from closeguard.workflows.definition import Workflow
from closeguard.workflows.retention import parse_age
from closeguard.workflows.runtime import ROLES, Role, Runtime, RuntimeConfig

__all__ = ["run"]

DEFAULT_LISTEN = "127.0.0.1:8787"
DEMO_SEED = 7


@dataclass(frozen=True)
class Target:
    """Where runs go: a Close key, or the embedded simulator (``sim``)."""

    api_key: str
    base_url: str | None
    store: Store
    checkpoints: Path
    sim: Simulator | None = None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise fail(f"--listen takes HOST:PORT, not {value!r}", 2)
    return host, int(port)


def _retention(value: str | None) -> float | None:
    """``--retain``'s age in seconds."""
    if value is None:
        return None
    try:
        return parse_age(value).total_seconds()
    except ConfigError as exc:
        raise fail(f"--retain: {exc}", 2) from None


def parse_roles(value: str) -> frozenset[Role]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names == ["all"]:
        return frozenset(ROLES)
    unknown = [n for n in names if n not in ROLES]
    if unknown or not names:
        raise fail(f"--role takes all or {', '.join(ROLES)} (comma-separated), not {value!r}", 2)
    return frozenset(n for n in ROLES if n in names)


def demo_target() -> Target:
    """A fresh simulated organization and a fresh demo store beside the real one."""
    folder = default_data_dir() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db*"):
        old.unlink()
    sim = Simulator(seed=DEMO_SEED, leads=30)
    store = Store(f"sqlite:///{folder / 'store.db'}")
    return Target(sim.api_key, SIM_BASE_URL, store, folder / "checkpoints.db", sim)


def close_target(settings: Settings) -> Target:
    assert settings.close_api_key is not None
    store = default_store()
    folder = Path(str(store.url.database)).parent if store.dialect == "sqlite" else None
    checkpoints = (folder or default_data_dir()) / "checkpoints.db"
    return Target(
        settings.close_api_key.get_secret_value(), settings.close_base_url, store, checkpoints
    )


def _model(spec: str | None) -> BaseChatModel | None:
    """The model for LLM steps, or None when none is configured (those steps skip)."""
    if spec or Settings().model:
        return resolve_model(spec)
    return None


async def _serve(
    workflows: Mapping[str, Workflow],
    target: Target,
    config: RuntimeConfig,
    *,
    duration: float | None,
    llm: BaseChatModel | None,
    console: Console,
    plain: bool,
    approve_after: float | None = 3.0,
    probes: Probes | None = None,
) -> Counter[str]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    async with open_store_checkpointer(target.store, target.checkpoints) as saver:
        runtime = Runtime(
            workflows.values(),
            store=target.store,
            checkpointer=saver,
            api_key=target.api_key,
            transport=target.sim.transport() if target.sim else None,
            base_url=target.base_url,
            llm=llm,
            config=config,
            probes=probes,
        )
        mode = "embedded simulator (no CLOSE_API_KEY)" if target.sim else "Close"
        title = f"closeguard run: {len(workflows)} workflows on {mode}"
        view = PlainView(console) if plain else LiveView(console, title)
        if plain:
            console.print(title, markup=False, highlight=False)
        runtime.feed.listeners.append(view.add)
        started = time.monotonic()
        with view, runs_logged_to(runtime.feed):
            main = asyncio.create_task(runtime.run(stop))
            ready = asyncio.create_task(runtime.ready.wait())
            await asyncio.wait([main, ready], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            extra: list[asyncio.Task[Any]] = []
            if target.sim is not None and not main.done():
                target.sim.webhooks.start()
                if "receiver" in config.roles:
                    url = runtime.receiver_url
                    runtime.feed.emit(Activity("note", f"simulator webhooks -> {url}"))
                extra.append(
                    asyncio.create_task(
                        DemoDriver(target.sim, runtime, approve_after=approve_after).run(stop)
                    )
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(_first_done(main, stop)), duration)
            stop.set()
            await main
            await asyncio.gather(*extra, return_exceptions=True)
            if target.sim is not None:
                await target.sim.webhooks.stop()
        elapsed = time.monotonic() - started
        runs = await runtime.queue.list(limit=100_000)
        counts = Counter(r.status for r in runs)
        counts["_elapsed"] = round(elapsed)
        return counts


class FeedHandler(logging.Handler):
    """Runs' log lines (``ctx.log``) into the live view, as notes."""

    def __init__(self, feed: Feed) -> None:
        super().__init__(logging.INFO)
        self.feed = feed

    def emit(self, record: logging.LogRecord) -> None:
        workflow = getattr(record, "workflow", None)
        text = record.getMessage()
        self.feed.emit(Activity("note", f"{workflow}: {text}" if workflow else text, workflow))


@contextlib.contextmanager
def runs_logged_to(feed: Feed) -> Iterator[None]:
    """Route the ``closeguard.workflows.run`` logger to ``feed`` instead of stderr."""
    logger = logging.getLogger(RUN_LOGGER)
    handler = FeedHandler(feed)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


async def _with_console(
    at: tuple[str, int] | None,
    target: Target,
    workflows: Mapping[str, Workflow],
    console: Console,
    main: Coroutine[Any, Any, Counter[str]],
    *,
    notify: tuple[str, ...] = (),
    console_url: str | None = None,
    probes: Probes | None = None,
) -> Counter[str]:
    """Run ``main`` with the web console served beside it (``at`` None: no console) and
    the notifier telling people of each approval request it makes."""
    reader = Reader(
        target.store,
        api_key=target.api_key,
        base_url=target.base_url,
        transport=target.sim.transport() if target.sim else None,
    )

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    def notifier(url: str | None) -> Notifier:
        return Notifier(
            target.store,
            urls=notify,
            console_url=console_url or url,
            describer=reader.describer,
            terminal=lambda text: say(f"notify: {text}"),
        )

    try:
        if at is None:
            async with notifier(None):
                return await main
        async with (
            open_console(
                target.store, *at, reader=reader, workflows=workflows, say=say, probes=probes
            ) as url,
            notifier(url),
        ):
            return await main
    finally:
        main.close()  # no-op once awaited; else (the console could not start) it never ran


async def _first_done(main: asyncio.Task[None], stop: asyncio.Event) -> None:
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([main, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def run(
    workflows: WorkflowsOpt = None,
    path: PathOpt = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            metavar="SECONDS",
            min=0,
            help="Stop after SECONDS (default: Ctrl-C).",
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help=f"Where the webhook receiver listens (default {DEFAULT_LISTEN}; "
            "the demo takes any free port).",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            metavar="URL",
            help="The receiver's URL as Close reaches it; keeps the webhook subscription "
            "synced and active.",
        ),
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            metavar="ROLES",
            help="all, or some of receiver,scheduler,worker (one part per process).",
        ),
    ] = "all",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="PROVIDER:MODEL",
            help="Model for LLM steps (default CLOSEGUARD_MODEL; none: they are skipped).",
        ),
    ] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Plain lines instead of the live view.")
    ] = False,
    console_at: Annotated[
        str | None,
        typer.Option(
            "--console",
            metavar="HOST:PORT|off",
            help=f"Where the web console listens (default {DEFAULT_CONSOLE}; the demo takes "
            "any free port; with --role, only when given); off: no console.",
        ),
    ] = None,
    console_url: Annotated[
        str | None,
        typer.Option(
            "--console-url",
            metavar="URL",
            help="The console's address as people reach it (behind a proxy), for the links "
            "in approval notifications (default: the console's own address).",
        ),
    ] = None,
    catch_up_every: Annotated[
        float,
        typer.Option(
            "--catch-up-every",
            metavar="SECONDS",
            min=1,
            help="Seconds between Event Log catch-up passes (events webhooks missed).",
        ),
    ] = RuntimeConfig.catchup_every,
    upkeep_every: Annotated[
        float,
        typer.Option(
            "--upkeep-every",
            metavar="SECONDS",
            min=1,
            help="Seconds between checks that the webhook subscription is active "
            "(a paused one is resumed and caught up).",
        ),
    ] = RuntimeConfig.subscription_every,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            metavar="SECONDS",
            min=3,
            help="Seconds a claimed run stays its worker's without a heartbeat (renewed every "
            "third of it); a dead worker's runs are taken over after it.",
        ),
    ] = RuntimeConfig.lease,
    retain: Annotated[
        str | None,
        typer.Option(
            "--retain",
            metavar="AGE",
            help="Prune daily (and at start) what finished more than AGE ago (90d, 12h, 2w), "
            "as closeguard store prune --older-than AGE does; with the scheduler role.",
        ),
    ] = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Run the workflows: webhooks, catch-up, schedules and workers, with a live view.

    Each approval request is announced to the people who can answer it: CLOSEGUARD_NOTIFY
    (Apprise URLs, space or comma separated) and each account's own URLs; with none, here.

    The receiver's address (and the console's) also serves /healthz, /readyz and /metrics
    (Prometheus); OTEL_TRACES_EXPORTER=console|otlp turns on OpenTelemetry spans
    (docs/operations.md).
    """
    start_serving(log_format)
    enabled = enabled_workflows(workflows, path)
    settings = Settings()
    notify = notify_urls(settings)
    if console_url is not None and not console_url.startswith(("http://", "https://")):
        raise fail(f"--console-url takes an http(s) URL, not {console_url!r}", 2)
    target = close_target(settings) if settings.close_api_key else demo_target()
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    if target.sim is not None and listen is None:
        port = 0
    retain_for = _retention(retain)
    config = RuntimeConfig(
        retain=retain_for,
        checkpoints=target.checkpoints,
        roles=parse_roles(role),
        listen=(host, port),
        public_url=public_url,
        subscribe=target.sim is not None,
        catchup_every=catch_up_every,
        subscription_every=upkeep_every,
        lease=lease,
    )
    llm = _model(model)
    console = Console()
    at = None if console_at == "off" else parse_console(console_at or DEFAULT_CONSOLE)
    if console_at is None and config.roles != frozenset(ROLES):
        at = None  # one part of a scaled-out runtime: the console only where asked for
    if at is not None and target.sim is not None and console_at is None:
        at = (at[0], 0)
    if target.sim is not None:
        console.print(
            "No CLOSE_API_KEY: running on an embedded simulated organization "
            f"(seed {DEMO_SEED}) with demo activity; store: {target.store.url.database}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    elif public_url is None and "receiver" in config.roles:
        console.print(
            "No --public-url: the webhook subscription is not managed here; events arrive "
            "through Event Log catch-up (every minute) or an existing subscription pointing "
            f"at http://{host}:{port}/webhooks/close.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if llm is None and any(w.uses_llm for w in enabled.values()):
        console.print(
            "No model configured (CLOSEGUARD_MODEL or --model): LLM steps are skipped.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    probes = Probes()
    counts = asyncio.run(
        _with_console(
            at,
            target,
            enabled,
            console,
            _serve(
                enabled,
                target,
                config,
                duration=duration,
                llm=llm,
                console=console,
                plain=plain or log_format == "json" or not console.is_terminal,
                approve_after=None if at is not None else 3.0,
                probes=probes,
            ),
            notify=notify,
            console_url=console_url,
            probes=probes,
        )
    )
    elapsed = counts.pop("_elapsed", 0)
    summary = ", ".join(f"{n} {status}" for status, n in counts.most_common()) or "none"
    console.print(
        f"Stopped after {elapsed}s. Runs: {summary}.", markup=False, highlight=False, soft_wrap=True
    )
    if target.sim is not None:
        console.print(
            f"Inspect them: CLOSEGUARD_STORE_URL=sqlite:///{target.store.url.database} "
            "closeguard runs list",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
