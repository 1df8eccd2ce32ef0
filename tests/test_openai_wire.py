"""The real provider path on the wire: ``closeguard chat --once`` and ``closeguard eval
run --model openai:...`` through langchain-openai, pointed (``OPENAI_BASE_URL``) at an
OpenAI-compatible server on 127.0.0.1 answering from a script (``_openai_wire``):
streamed tool-call deltas, parallel tool calls, usage and cost, every tool schema held to
OpenAI's strict rules, and provider errors as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain.chat_models import init_chat_model
from langchain_core.utils.function_calling import convert_to_openai_tool
from typer.testing import CliRunner

from closeguard.agent import models
from closeguard.agent.models import strict_tool_spec, strict_violations
from closeguard.cli import app
from closeguard.store import Store
from closeguard.tools.langchain import make_tools
from tests._openai_wire import WireScript, tool_call, wire_server

ROOT = Path(__file__).resolve().parent.parent
CLOSEGUARD = str(Path(sys.executable).parent / "closeguard")
USAGE = {"input_tokens": 1000, "output_tokens": 50}

SUITE = """\
name: wire
policy: read-only
world:
  leads: 0
  fixtures:
    - handle: acme
      name: Acme
      opportunities: [{handle: deal, value: 500000}]
tasks:
  - id: ask
    instruction: What is the Acme deal worth?
    expect:
      unchanged: true
      answer: [{number: "{{deal.value}}", scale: 0.01}]
    reference:
      calls: [{tool: opportunity_list, args: {lead_id: "{{acme}}"}}]
      answer: It is worth $5,000.
"""

LOOKUP = [
    {
        "tool_calls": [  # two calls at once, strict-style: every argument, nulls for unset
            tool_call("lead_list", fields=None, skip=None, limit=5, query="Acme"),
            tool_call(
                "opportunity_list",
                fields=None,
                skip=None,
                limit=None,
                lead_id=None,
                status_id=None,
                status_type=None,
                pipeline_id=None,
                user_id=None,
            ),
        ],
        "usage": USAGE,
    },
    {"text": "The Acme deal is worth $5,000.", "usage": USAGE},
]


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real ``init_chat_model`` (the suite refuses it by default) with a test key."""
    monkeypatch.setattr(models, "init_chat_model", init_chat_model)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wire-test")


def eval_run(tmp_path: Path, script: WireScript, monkeypatch: pytest.MonkeyPatch) -> Any:
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    (folder / "tasks.yaml").write_text(SUITE)
    report = tmp_path / "r.json"
    with wire_server(script) as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        args = ["eval", "run", str(folder), "-m", "openai:gpt-4o-mini", "--price", "1,2"]
        result = CliRunner().invoke(app, [*args, "--report", str(report)])
    return result, json.loads(report.read_text()) if report.exists() else None


@pytest.mark.usefixtures("openai_env")
def test_eval_run_through_langchain_openai_reports_usage_and_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = WireScript(turns=LOOKUP)
    result, report = eval_run(tmp_path, script, monkeypatch)
    assert result.exit_code == 0, result.output
    trial = report["tasks"][0]["trials"][0]
    assert trial["passed"] is True, trial["failures"]
    assert report["summary"]["tokens"] == {
        "input_tokens": 2000,
        "output_tokens": 100,
        "total_tokens": 2100,
    }
    assert report["summary"]["cost_usd"] == pytest.approx(2000 / 1e6 * 1 + 100 / 1e6 * 2)
    assert script.violations == []
    sent = script.requests[0]
    assert len(sent["tools"]) >= 20 and all(t["function"]["strict"] for t in sent["tools"])
    assert sent["model"] == "gpt-4o-mini"
    # the two parallel calls both ran, their results went back in the second request
    answered = [m for m in script.requests[-1]["messages"] if m["role"] == "tool"]
    assert len(answered) == 2 and "Acme" in answered[0]["content"]


@pytest.mark.usefixtures("openai_env")
@pytest.mark.parametrize(
    ("turn", "words"),
    [
        (
            {"status": 429, "message": "Rate limit reached for gpt-4o-mini"},
            "the model provider (openai) answered 429: Rate limit reached for gpt-4o-mini",
        ),
        (
            {"status": 500, "message": "The server had an error"},
            "the model provider (openai) answered 500: The server had an error",
        ),
        (
            {"tool_calls": [{"name": "lead_list", "arguments": '{"query": "Acme'}]},
            "the model sent a malformed tool call: lead_list",
        ),
    ],
)
def test_a_provider_error_is_one_line_in_the_eval_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turn: dict[str, Any], words: str
) -> None:
    result, report = eval_run(tmp_path, WireScript(turns=[turn]), monkeypatch)
    assert result.exit_code == 0, result.output
    trial = report["tasks"][0]["trials"][0]
    assert trial["passed"] is False and trial["failures"][0].startswith(f"model error: {words}")
    assert "Traceback" not in trial["error"] and "\n" not in trial["error"]
    assert report["summary"]["crashed"] == 1


def chat_once(store: Store, url: str, question: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CLOSE_API_KEY", "CLOSEGUARD_MODEL", "CLOSE_OAUTH_ACCESS_TOKEN")
    }
    env.update(
        CLOSEGUARD_STORE_URL=str(store.url),
        OPENAI_BASE_URL=url,
        OPENAI_API_KEY="sk-wire-test",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return subprocess.run(
        [CLOSEGUARD, "chat", "--once", question, "--model", "openai:gpt-4o-mini"],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_chat_once_streams_tool_call_deltas_from_the_wire(store: Store) -> None:
    turns = [
        LOOKUP[0],
        {"text": "You have leads; the first one matching Acme is listed.", "usage": USAGE},
    ]
    script = WireScript(turns=turns)
    with wire_server(script) as url:
        done = chat_once(store, url, "Which Acme leads do I have?")
    assert done.returncode == 0, done.stderr
    assert "the first one matching Acme is listed" in done.stdout
    assert "lead_list" in done.stderr and "opportunity_list" in done.stderr
    assert all(r.get("stream") for r in script.requests) and script.violations == []


def test_chat_once_says_a_provider_error_in_one_line(store: Store) -> None:
    script = WireScript(turns=[{"status": 429, "message": "Rate limit reached"}])
    with wire_server(script) as url:
        done = chat_once(store, url, "Which leads do I have?")
    assert done.returncode == 1
    assert "the model provider (openai) answered 429: Rate limit reached" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(script.requests) == 3  # the client's own two retries, then the line


def test_every_catalog_tool_is_accepted_under_openai_strict_rules() -> None:
    tools = make_tools(None)  # type: ignore[arg-type]
    assert len(tools) >= 70
    for tool in tools:
        spec = strict_tool_spec(tool)["function"]
        assert spec["strict"] is True
        assert strict_violations(spec["parameters"]) == [], tool.name
    loose = convert_to_openai_tool(tools[0])["function"]["parameters"]
    assert strict_violations(loose), "the checker must reject a non-strict schema"
