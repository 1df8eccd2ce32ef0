"""``closeguard run`` (the embedded demo), ``workflows`` and ``runs`` from the command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.workflows.queue import RunRequest, SqlRunQueue

runner = CliRunner()


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Close key, no model, and a data dir of the test's own."""
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSEGUARD_MODEL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def test_run_without_a_key_fires_the_packaged_workflows_and_exits_cleanly(
    tmp_path: Path,
) -> None:
    result = runner.invoke(app, ["run", "--duration", "5"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "No CLOSE_API_KEY: running on an embedded simulated organization" in out
    assert "webhook subscription created: http://127.0.0.1:" in out
    for fired in (
        "new-lead-triage completed",
        "stale-opportunity-nudge completed",
        "overdue-task-digest completed",
        "follow-up-on-status-change completed",
        "call-summary completed",
    ):
        assert fired in out, fired
    assert "call-summary: " in out and "no model configured" in out
    assert "action new-lead-triage: POST /task/ -> 200" in out
    assert "Stopped after" in out and "completed" in out.splitlines()[-2]
    demo_store = tmp_path / "data" / "closeguard" / "demo" / "store.db"
    assert demo_store.is_file()
    listed = runner.invoke(
        app, ["runs", "list", "--json"], env={"CLOSEGUARD_STORE_URL": f"sqlite:///{demo_store}"}
    )
    runs = json.loads(listed.output)
    assert runs and {r["status"] for r in runs} <= {"completed", "waiting_approval", "running"}
    assert {r["workflow"] for r in runs} >= {"new-lead-triage", "follow-up-on-status-change"}


def test_run_refuses_unknown_workflows_and_bad_options() -> None:
    result = runner.invoke(app, ["run", "--workflows", "nope", "--duration", "1"])
    assert result.exit_code == 2 and "no workflow nope; known:" in result.output
    result = runner.invoke(app, ["run", "--listen", "localhost", "--duration", "1"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    result = runner.invoke(app, ["run", "--role", "chef", "--duration", "1"])
    assert result.exit_code == 2 and "--role" in result.output


def test_workflows_list_and_show() -> None:
    listed = json.loads(runner.invoke(app, ["workflows", "list", "--json"]).output)
    assert len(listed) == 9
    by_name = {w["name"]: w for w in listed}
    assert by_name["won-deal-handoff"]["trigger"].startswith("event opportunity.updated")
    assert by_name["rep-offboarding"]["trigger"] == "manual (needs from_user, to_user)"
    shown = runner.invoke(app, ["workflows", "show", "duplicate-lead-merge"])
    assert shown.exit_code == 0
    assert "lead.merge" in shown.output and "approve:" in shown.output


def test_workflows_run_dry_run_sends_no_write() -> None:
    result = runner.invoke(
        app, ["workflows", "run", "stale-opportunity-nudge", "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "completed" and data["run_id"].startswith("dry_")
    writes = [c for c in data["calls"] if c["method"] != "GET"]
    assert writes and {c["decision"] for c in writes} == {"dry_run"}


def test_workflows_run_records_a_run_and_explains_a_failure() -> None:
    result = runner.invoke(
        app,
        [
            "workflows",
            "run",
            "rep-offboarding",
            "--param",
            "from_user=nobody",
            "--param",
            "to_user=x",
        ],
    )
    assert result.exit_code == 1
    assert "run run_" in result.output and "failed" in result.output
    assert "error: NotFound" in result.output
    missing = runner.invoke(app, ["workflows", "run", "rep-offboarding"])
    assert missing.exit_code == 2 and "--param from_user=..." in missing.output
    no_event = runner.invoke(app, ["workflows", "run", "new-lead-triage"])
    assert no_event.exit_code == 2 and "--event" in no_event.output


def test_runs_list_show_and_retry_a_dead_run(store: Store) -> None:
    queue = SqlRunQueue(store)

    async def dead_run() -> str:
        [run_id] = await queue.enqueue([RunRequest("wf", "ev_1", "event", {}, lead_id="lead_1")])
        await queue.claim("w")
        await queue.fail(run_id, "w", "ServerError: 503 after 5 attempts", transient=False)
        return run_id

    run_id = asyncio.run(dead_run())
    listed = runner.invoke(app, ["runs", "list", "--status", "failed"])
    assert listed.exit_code == 0 and run_id in listed.output
    shown = runner.invoke(app, ["runs", "show", run_id[:8]])
    assert shown.exit_code == 0
    assert "ServerError: 503" in shown.output and f"closeguard runs retry {run_id}" in shown.output
    retried = runner.invoke(app, ["runs", "retry", run_id])
    assert retried.exit_code == 0 and "queued again" in retried.output
    again = runner.invoke(app, ["runs", "retry", run_id])
    assert again.exit_code == 1 and "only dead or failed" in again.output
    assert runner.invoke(app, ["runs", "show", "run_nope"]).exit_code == 1


async def test_ctrl_c_stops_closeguard_run_gracefully(tmp_path: Path) -> None:
    """A real process: the first SIGINT lets runs finish, then it exits 0 with its summary."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    env.pop("CLOSE_API_KEY", None)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("closeguard")),
        "run",
        "--plain",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while not any("new-lead-triage completed" in line for line in lines):
            line = (await process.stdout.readline()).decode()
            assert line, "closeguard run ended early:\n" + "".join(lines)
            lines.append(line)
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        rest = (await process.stdout.read()).decode()
        code = await process.wait()
    assert code == 0, "".join(lines) + rest
    assert "Stopped after" in rest and "Traceback" not in rest


def test_workflows_run_with_an_event_file(tmp_path: Path) -> None:
    sim = Simulator(seed=7, leads=30)  # the world `workflows run` starts without a key
    lead = next(iter(sim.state["leads"].values()))
    event = {
        "object_type": "lead",
        "action": "created",
        "object_id": lead["id"],
        "lead_id": lead["id"],
        "data": dict(lead),
    }
    file = tmp_path / "event.json"
    file.write_text(json.dumps({"subscription_id": "whsub_x", "event": event}))
    result = runner.invoke(
        app, ["workflows", "run", "new-lead-triage", "--event", str(file), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "completed", data
    assert ("POST", "/task/", "allow") in {
        (c["method"], c["path"], c["decision"]) for c in data["calls"]
    }


def test_run_says_so_in_one_line_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["run", "--listen", f"127.0.0.1:{port}", "--duration", "1"])
    assert result.exit_code == 1
    assert f"error: the webhook receiver cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
