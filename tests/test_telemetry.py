"""Operating closeguard: spans, metrics, health endpoints and JSON logs (issue 21).

Spans are read from the SDK's in-memory exporter and metrics from the project's registry
after real work: a signed webhook from the simulator becomes a run whose write goes
through the guard; an agent turn and its tool call; an MCP call.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psycopg
import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from mcp import Client
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from typer.testing import CliRunner

from closeguard.agent.testing import call, scripted, turn
from closeguard.cli import app
from closeguard.console import ConsoleConfig, build_console
from closeguard.guardrails import AuditLog, Guarded, Policy
from closeguard.mcp import Gateway
from closeguard.simulator import Simulator
from closeguard.simulator.core import BASE_URL
from closeguard.simulator.faults import FaultConfig
from closeguard.simulator.ratelimit import RateLimits
from closeguard.store import Store
from closeguard.telemetry import Probes, metrics, tracing
from closeguard.telemetry.logs import JsonFormatter, configure_logging
from closeguard.tools.clock import FakeClock
from closeguard.workflows.definition import Context, EventTrigger, Workflow
from closeguard.workflows.runtime import Runtime, RuntimeConfig
from tests._agent import rig
from tests._mcp import POLICY_YAML, leads
from tests._pg import fresh_database

POLICY = Policy.from_dict(
    {
        "name": "telemetry-test",
        "grants": {"task": "write", "lead": "read"},
        "constraints": {"task.create": {"lead_id": {"scope": "triggered"}}},
    }
)
TASK_TEXT = "Welcome aboard, secret-argument-7731"


async def welcome(ctx: Context) -> None:
    lead_id = ctx.event_data["id"]
    await ctx.effect(
        "task", lambda: ctx.client.tasks.create({"lead_id": lead_id, "text": TASK_TEXT})
    )


WELCOME = Workflow("welcome", EventTrigger("lead", "created"), POLICY, (welcome,))


async def until(check: Callable[[], bool], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.reset()


@pytest.fixture
async def running(
    store: Store,
) -> AsyncIterator[Callable[..., Awaitable[tuple[Runtime, Simulator, str]]]]:
    """A runtime on a fresh simulator, subscribed; yields it, the simulator, its base URL."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    sims: list[Simulator] = []

    async def start(*workflows: Workflow) -> tuple[Runtime, Simulator, str]:
        sim = Simulator(seed=5, leads=4)
        sims.append(sim)
        runtime = Runtime(
            workflows,
            store=store,
            checkpointer=InMemorySaver(),
            api_key=sim.api_key,
            transport=sim.transport(),
            base_url=BASE_URL,
            config=RuntimeConfig(listen=("127.0.0.1", 0), subscribe=True, poll=0.05),
        )
        tasks.append(asyncio.create_task(runtime.run(stop)))
        await asyncio.wait_for(runtime.ready.wait(), 20)
        sim.webhooks.start()
        assert runtime.receiver_url is not None
        return runtime, sim, runtime.receiver_url.rsplit("/webhooks", 1)[0]

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for sim in sims:
        await sim.webhooks.stop()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def every_value(found: list[ReadableSpan]) -> str:
    return json.dumps([attrs(s) for s in found] + [s.name for s in found], default=str)


def sample(name: str, **labels: str) -> float:
    return metrics.registry().get_sample_value(name, labels) or 0.0


# -- spans ---------------------------------------------------------------------------------


async def test_a_webhook_run_leaves_its_spans_with_who_what_and_outcome_but_no_argument(
    running: Any, spans: InMemorySpanExporter
) -> None:
    runtime, sim, _ = await running(WELCOME)
    async with sim.client() as client:
        lead = await client.leads.create({"name": "Ada Telemetry"})
    await until(lambda: any(t["text"] == TASK_TEXT for t in sim.state["tasks"].values()))
    await until(lambda: any(s.name == "workflow.run" for s in spans.get_finished_spans()))
    [run] = await runtime.queue.list(status="completed")
    found = list(spans.get_finished_spans())
    names = {s.name for s in found}
    assert {"webhook.delivery", "workflow.run", "workflow.step", "close.request"} <= names

    [run_span] = [s for s in found if s.name == "workflow.run"]
    assert attrs(run_span) == {
        "closeguard.workflow": "welcome",
        "closeguard.run_id": run.id,
        "closeguard.attempt": 1,
        "closeguard.outcome": "completed",
    }
    [step] = [s for s in found if s.name == "workflow.step"]
    assert step.parent is not None and step.parent.span_id == run_span.context.span_id
    assert attrs(step)["closeguard.step"] == "welcome"
    [write] = [
        s
        for s in found
        if s.name == "close.request" and attrs(s).get("closeguard.endpoint") == "task.create"
    ]
    assert write.parent is not None and write.parent.span_id == step.context.span_id
    assert attrs(write) == {
        "closeguard.actor": "welcome",
        "closeguard.run_id": run.id,
        "closeguard.policy": "telemetry-test",
        "closeguard.method": "POST",
        "closeguard.endpoint": "task.create",
        "closeguard.decision": "allow",
        "closeguard.rule": "grants.task",
        "http.response.status_code": 200,
    }
    deliveries = [attrs(s) for s in found if s.name == "webhook.delivery"]
    assert {"closeguard.outcome": "stored", "closeguard.event": "lead.created"} in deliveries

    seen = every_value(found)
    for secret in (TASK_TEXT, "Ada Telemetry", sim.api_key, lead.id):
        assert secret not in seen


async def test_a_denied_call_and_an_approval_show_on_the_request_span(
    store: Store, spans: InMemorySpanExporter
) -> None:
    sim = Simulator(seed=3, leads=2)
    policy = Policy.from_dict(
        {"name": "asks", "grants": {"lead": "destructive"}, "approve": ["lead.delete"]}
    )
    lead_id = next(iter(sim.state["leads"]))
    async with sim.client(policy=Guarded(policy, store=store), actor="bot") as client:
        with pytest.raises(Exception, match="approv"):
            await client.leads.delete(lead_id)
        with pytest.raises(Exception, match=r"denied|not granted|grant"):
            await client.tasks.create({"lead_id": lead_id, "text": "nope"})
    requests = [attrs(s) for s in spans.get_finished_spans() if s.name == "close.request"]
    asked = [a for a in requests if a.get("closeguard.decision") == "approval_required"]
    finished = list(spans.get_finished_spans())
    assert all(not s.events for s in finished)  # no exception message, no stack trace
    errors = {s.status.description for s in finished if s.name == "close.request"}
    assert errors == {"ApprovalRequired", "PolicyViolation"}
    assert len(asked) == 1 and str(asked[0]["closeguard.approval_id"]).startswith("appr_")
    assert asked[0]["closeguard.endpoint"] == "lead.delete"
    assert "http.response.status_code" not in asked[0]
    denied = [a for a in requests if a.get("closeguard.decision") == "deny"]
    assert len(denied) == 1 and denied[0]["closeguard.endpoint"] == "task.create"
    assert {a["closeguard.error"] for a in requests} == {"ApprovalRequired", "PolicyViolation"}
    assert "nope" not in every_value(finished)


async def test_agent_turns_and_tool_calls_have_spans(
    store: Store, spans: InMemorySpanExporter
) -> None:
    model = scripted(
        turn("", call("task_create", lead_id="LEAD", text="Call back about pricing")),
        turn("Task created."),
    )
    async with rig(store, "sales-rep", model) as r:
        model.turns[0]["tool_calls"][0]["args"]["lead_id"] = r.lead_ids()[0]
        await r.ask("Remind me to call them back")
    found = list(spans.get_finished_spans())
    turns = [attrs(s) for s in found if s.name == "agent.turn"]
    assert [t["closeguard.turn"] for t in turns] == [1, 2]
    assert {t["closeguard.policy"] for t in turns} == {"sales-rep"}
    [tool] = [s for s in found if s.name == "agent.tool_call"]
    assert attrs(tool)["closeguard.tool"] == "task_create"
    [request] = [
        s
        for s in found
        if s.name == "close.request" and attrs(s).get("closeguard.endpoint") == "task.create"
    ]
    assert request.parent is not None and request.parent.span_id == tool.context.span_id
    assert "Call back about pricing" not in every_value(found)


class _Seen(AsyncCallbackHandler):
    """A LangChain callback handler, as LangSmith's tracer is one: what it was told."""

    def __init__(self) -> None:
        self.model_starts = 0
        self.chain_starts = 0

    async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.model_starts += 1

    async def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self.chain_starts += 1


async def test_langchain_callbacks_still_see_the_agent_while_spans_are_made(
    store: Store, spans: InMemorySpanExporter
) -> None:
    seen = _Seen()
    model = scripted(turn("", call("lead_search", query="Acme")), turn("None found."))
    async with rig(store, "read-only", model) as r:
        r.config["callbacks"] = [seen]
        await r.ask("Any lead called Acme?")
    assert seen.model_starts == 2 and seen.chain_starts > 0
    assert [s.name for s in spans.get_finished_spans()].count("agent.turn") == 2


async def test_an_mcp_call_has_a_span_around_its_close_request(
    store: Store, spans: InMemorySpanExporter
) -> None:
    sim = Simulator(seed=2, leads=3)
    guarded = Guarded(Policy.from_yaml(POLICY_YAML), store=store)
    gateway = Gateway(guarded, lambda actor: sim.client(policy=guarded, actor=actor))
    lead_id = leads(sim, 1)[0]
    async with Client(gateway.server(), mode="legacy") as client:
        await client.call_tool("lead_get", {"id": lead_id})
    await gateway.aclose()
    found = list(spans.get_finished_spans())
    [mcp_call] = [s for s in found if s.name == "mcp.call_tool"]
    assert attrs(mcp_call)["closeguard.tool"] == "lead_get"
    assert attrs(mcp_call)["closeguard.policy"] == guarded.policy.name
    [request] = [s for s in found if s.name == "close.request"]
    assert request.parent is not None and request.parent.span_id == mcp_call.context.span_id
    assert attrs(request)["closeguard.endpoint"] == "lead.get"
    assert lead_id not in every_value(found)


def test_tracing_follows_the_otel_variables() -> None:
    try:
        assert tracing.configure({}) is False
        assert tracing.span("x") is tracing.span("y")  # the one shared no-op
        off = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
        assert tracing.configure(off) is False
        assert tracing.configure({"OTEL_TRACES_EXPORTER": "none"}) is False
        grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        with pytest.raises(tracing.TracingConfigError, match=r"closeguard\[otel-otlp\]"):
            tracing.configure(grpc)
        with pytest.raises(tracing.TracingConfigError, match="console, otlp or none"):
            tracing.configure({"OTEL_TRACES_EXPORTER": "zipkin"})
    finally:
        tracing.reset()


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector keeping what it is sent."""

    posts: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).posts.append((self.path, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


SPAN_SCRIPT = (
    "from closeguard.telemetry import span\n"
    "with span('close.request', actor='exporter-test', policy='p') as s:\n"
    "    s.set(status=200)\n"
)


def test_spans_reach_the_console_and_an_otlp_collector() -> None:
    """The exporters the OTEL variables name, end to end in a fresh process each (spans
    leave in batches, flushed at exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    printed = subprocess.run(
        [sys.executable, "-c", SPAN_SCRIPT],
        env={**env, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "cg-test"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    exported = json.loads(printed.stdout)
    assert exported["name"] == "close.request"
    assert exported["attributes"] == {
        "closeguard.actor": "exporter-test",
        "closeguard.policy": "p",
        "http.response.status_code": 200,
    }
    assert exported["resource"]["attributes"]["service.name"] == "cg-test"

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subprocess.run(
            [sys.executable, "-c", SPAN_SCRIPT],
            env={
                **env,
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            },
            check=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    [(path, body)] = _Collector.posts
    assert path == "/v1/traces"
    assert b"close.request" in body and b"exporter-test" in body


def test_commands_that_serve_nothing_import_neither_sdk_nor_prometheus() -> None:
    """With the two made unimportable, the CLI, the guard and the runtime load, and a span
    and a metric cost nothing. (LangSmith, under langchain-core, tries the SDK itself.)"""
    code = (
        "import sys\n"
        "sys.modules.update(dict.fromkeys(('prometheus_client', 'opentelemetry.sdk')))\n"
        "import closeguard.cli, closeguard.guardrails, closeguard.workflows.runtime\n"
        "from closeguard.telemetry import span, metrics\n"
        "with span('x') as s: s.set(outcome='ok')\n"
        "metrics.record_run('w', 'completed', 0.1)\n"
        "metrics.record_audit('POST', 'p', 'allow', 200)\n"
        "print(metrics.enabled(), span('x') is span('y'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False True"


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_count_a_webhook_run_and_scrape_in_prometheus_format(
    running: Any,
) -> None:
    metrics.enable()
    before = {
        "received": sample("closeguard_webhook_deliveries_received_total"),
        "stored": sample("closeguard_webhook_deliveries_stored_total"),
        "runs": sample("closeguard_runs_finished_total", workflow="welcome", outcome="completed"),
        "latency": sample("closeguard_run_duration_seconds_count", workflow="welcome"),
        "allow": sample(
            "closeguard_guard_decisions_total", policy="telemetry-test", decision="allow"
        ),
        "ok": sample("closeguard_close_requests_total", status="200"),
        "audit": sample("closeguard_audit_rows_written_total"),
    }
    runtime, sim, base = await running(WELCOME)
    async with sim.client() as client:
        lead = await client.leads.create({"name": "Grace Metrics"})
    await until(lambda: any(t["text"] == TASK_TEXT for t in sim.state["tasks"].values()))
    await until(
        lambda: (
            sample("closeguard_runs_finished_total", workflow="welcome", outcome="completed")
            > before["runs"]
        )
    )
    await runtime.queue.list(status="completed")
    await until(lambda: sample("closeguard_audit_rows_written_total") > before["audit"])
    assert sample("closeguard_webhook_deliveries_received_total") >= before["received"] + 1
    assert sample("closeguard_webhook_deliveries_stored_total") >= before["stored"] + 1
    assert (
        sample("closeguard_runs_finished_total", workflow="welcome", outcome="completed")
        == before["runs"] + 1
    )
    assert (
        sample("closeguard_run_duration_seconds_count", workflow="welcome") == before["latency"] + 1
    )
    assert (
        sample("closeguard_guard_decisions_total", policy="telemetry-test", decision="allow")
        == before["allow"] + 1
    )
    assert sample("closeguard_close_requests_total", status="200") > before["ok"]

    async with httpx.AsyncClient() as http:
        scraped = await http.get(f"{base}/metrics")
        bad = await http.post(f"{base}/webhooks/close", content=b"{}")
        again = await http.get(f"{base}/metrics")
    assert scraped.status_code == 200 and bad.status_code == 401
    assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    for name in (
        "closeguard_webhook_deliveries_received",
        "closeguard_runs_finished",
        "closeguard_run_duration_seconds",
        "closeguard_guard_decisions",
        "closeguard_close_requests",
        "closeguard_close_rate_limited",
        "closeguard_rate_limit_wait_seconds",
        "closeguard_audit_rows_written",
        "closeguard_inbox_depth",
        "closeguard_queue_age_seconds",
        "closeguard_approvals_pending",
        "closeguard_runs",
    ):
        assert name in families, name
    runs_by_status = {s.labels["status"]: s.value for s in families["closeguard_runs"].samples}
    assert runs_by_status.get("completed", 0) >= 1
    [depth] = families["closeguard_inbox_depth"].samples
    assert depth.value == 0
    refused = {
        s.labels["reason"]: s.value
        for f in text_string_to_metric_families(again.text)
        if f.name == "closeguard_webhook_deliveries_refused"
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert refused.get("unauthorized_missing", 0) >= 1
    [run] = await runtime.queue.list(status="completed")
    for private in (lead.id, run.id, "Grace Metrics", sim.api_key):
        assert private not in scraped.text


async def test_429s_and_rate_limit_waits_are_counted(store: Store) -> None:
    metrics.enable()
    limited, waited = (
        sample("closeguard_close_rate_limited_total"),
        sample("closeguard_rate_limit_wait_seconds_total"),
    )
    statuses = sample("closeguard_close_requests_total", status="429")
    sim = Simulator(
        seed=4,
        leads=3,
        clock=FakeClock(),
        rate_limits=RateLimits(rps=5),
        faults=FaultConfig.everywhere(error_429=0.3),
    )
    lead_id = next(iter(sim.state["leads"]))
    guarded = Guarded(Policy.load("read-only"), store=store)
    async with sim.client(policy=guarded, actor="reader") as close:
        await asyncio.gather(*(close.leads.get(lead_id) for _ in range(40)))
    rows = [r for r in AuditLog(store).tail(500) if r["status_code"] == 429]
    assert len(rows) >= 3
    assert sample("closeguard_close_rate_limited_total") - limited == len(rows)
    assert sample("closeguard_close_requests_total", status="429") - statuses == len(rows)
    assert sample("closeguard_rate_limit_wait_seconds_total") - waited >= 40 / 5 - 1


# -- health ---------------------------------------------------------------------------------


async def test_readyz_names_each_part_of_the_runtime(running: Any) -> None:
    runtime, _, base = await running(WELCOME)
    async with httpx.AsyncClient() as http:
        alive = await http.get(f"{base}/healthz")
        ready = await http.get(f"{base}/readyz")
    runtime.parts.running["worker"].cancel()
    await until(lambda: runtime.parts.running["worker"].done())
    status, stuck = await runtime.probes.readiness()
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": dict.fromkeys(("store", "migrations", "scheduler", "workers", "receiver"), "ok"),
    }
    assert status == 503 and stuck["status"] == "not ready"
    assert "workers" in stuck["not_ready"] and stuck["checks"]["workers"] == "stopped"


async def test_console_readyz_is_503_while_the_store_is_down_and_200_once_back() -> None:
    with fresh_database() as url:
        name = url.rsplit("/", 1)[1]
        store = Store(url.replace("postgresql://", "postgresql+psycopg://"))
        app = build_console(ConsoleConfig(store=store, token="t" * 32))
        admin = psycopg.connect(url.rsplit("/", 1)[0] + "/test", autocommit=True)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                up = await http.get("/readyz")
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                down = await http.get("/readyz")
                alive = await http.get("/healthz")
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
                back = await http.get("/readyz")
                scrape = await http.get("/metrics")
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.close()
            store.dispose()
    assert up.status_code == 200
    assert up.json() == {"status": "ready", "checks": {"store": "ok", "migrations": "ok"}}
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "not ready" and "store" in body["not_ready"]
    assert body["checks"]["store"].startswith("does not answer")
    assert alive.status_code == 200
    assert back.status_code == 200 and back.json()["status"] == "ready"
    assert scrape.status_code == 200 and "closeguard_approvals_pending" in scrape.text


async def test_readyz_says_when_migrations_are_behind(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    probes = Probes()
    app = build_console(ConsoleConfig(store=store, token="t" * 32, probes=probes))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        answer = await http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["not_ready"] == ["migrations"]
    assert answer.json()["checks"]["migrations"].startswith("at 0001, this version needs ")


# -- logs -----------------------------------------------------------------------------------


def test_json_log_lines_parse() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("closeguard.test.jsonlogs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("refused a delivery (%d): %s", 401, "bad signature", extra={"part": "x"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning" and first["logger"] == "closeguard.test.jsonlogs"
    assert first["message"] == "refused a delivery (401): bad signature"
    assert first["part"] == "x" and first["ts"].endswith("+00:00")
    assert second["exc_type"] == "ValueError" and "boom" in second["exc"]


def test_log_format_json_makes_the_root_logger_write_json(tmp_path: Path) -> None:
    code = (
        "import logging\n"
        "from closeguard.telemetry.logs import configure_logging\n"
        "configure_logging('json')\n"
        "logging.getLogger('closeguard.workflows.receiver').info('receiver up')\n"
        "logging.getLogger('httpx').info('not shown: below warning')\n"
        "logging.getLogger('uvicorn.error').warning('port in use')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert [(x["logger"], x["message"]) for x in lines] == [
        ("closeguard.workflows.receiver", "receiver up"),
        ("uvicorn.error", "port in use"),
    ]
    configure_logging("text")  # text leaves logging alone


# -- the serving commands -------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLOSE_API_KEY", "CLOSEGUARD_MODEL", "CLOSEGUARD_CONSOLE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (["console", "--log-format", "xml"], {}, 2, "--log-format takes text or json"),
        (
            ["mcp", "serve", "-p", "read-only", "--log-format", "yaml"],
            {},
            2,
            "--log-format takes text or json",
        ),
        (
            ["run", "--duration", "0.5", "--plain"],
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            1,
            "OTEL_TRACES_EXPORTER='zipkin' is not supported",
        ),
    ],
)
def test_serving_commands_refuse_a_bad_log_format_or_exporter_in_one_line(
    offline: None,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    code: int,
    says: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, args)
    tracing.reset()
    assert result.exit_code == code, result.output
    assert says in result.output and "Traceback" not in result.output
