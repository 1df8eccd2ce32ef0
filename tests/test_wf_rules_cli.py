"""``closeguard workflows show | schema | test`` for rules, and ``run --path examples/rules/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from closeguard.cli import app
from closeguard.guardrails import Policy
from closeguard.workflows import packaged_workflows

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "rules"


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSEGUARD_MODEL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


def test_show_json_is_the_derived_policy_as_policy_data() -> None:
    result = runner.invoke(app, ["workflows", "show", "won-deal-handoff", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {
        "name", "description", "mode", "grants", "deny", "approve", "constraints", "limits"
    }  # fmt: skip
    again = Policy.from_dict(data)  # the same data a policy YAML holds, read back
    assert again.grants == packaged_workflows()["won-deal-handoff"].load_policy().grants
    assert data["constraints"]["lead.update"]["id"] == {"scope": "triggered"}
    assert data["limits"]["per_run"]["per_endpoint"] == {
        "lead.update": 1, "activity.note.create": 1, "task.create": 1
    }  # fmt: skip


def test_show_prints_the_trigger_steps_and_policy_of_a_users_rule() -> None:
    result = runner.invoke(
        app, ["workflows", "show", "big-deal-follow-up", "--path", str(EXAMPLES)]
    )
    assert result.exit_code == 0, result.output
    assert "trigger:    event opportunity.updated changing status_id" in result.output
    assert "if:         {value: {min: 100000}}" in result.output
    assert "step 1:     step1: create task" in result.output
    policy = yaml.safe_load(result.output.split("policy (derived from the steps):\n", 1)[1])
    assert policy["grants"] == {"lead": "read", "task": "write"}


def test_schema_validates_every_shipped_and_example_rule() -> None:
    result = runner.invoke(app, ["workflows", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    files = [*EXAMPLES.glob("*.yaml"), *Path(packaged_rules_dir()).glob("*.yaml")]
    assert len(files) >= 8
    for file in files:
        jsonschema.validate(yaml.safe_load(file.read_text().replace("\non:", "\n'on':")), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "on": "lead.created", "steps": [{"frob": 1}]}, schema)


def packaged_rules_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "closeguard" / "workflows" / "library" / "rules"


def test_test_runs_a_rule_on_a_sample_event_and_shows_each_call() -> None:
    result = runner.invoke(
        app,
        ["workflows", "test", "won-deal-handoff", "--sample", "opportunity.updated", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "completed" and data["where"] == "simulator"
    assert data["event"]["data"]["status_type"] == "won"  # a sample the if: matches
    writes = [(c["method"], c["path"].split("/")[1], c["decision"]) for c in data["calls"]]
    assert ("PUT", "lead", "allow") in writes and ("POST", "task", "allow") in writes
    assert set(data["results"]) == {"customer", "customer_status", "handoff_note", "onboarding"}


def test_test_explains_what_it_cannot_do(tmp_path: Path) -> None:
    no_match = runner.invoke(
        app,
        ["workflows", "test", "call-follow-up-draft", "--sample", "opportunity.updated"],
    )
    assert no_match.exit_code == 1 and "none of the" in no_match.output
    needs_key = runner.invoke(
        app, ["workflows", "test", "won-deal-handoff", "--dry-run", "--sample", "x.updated"]
    )
    assert needs_key.exit_code == 2 and "set CLOSE_API_KEY" in needs_key.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\non: lead.created\nsteps:\n  - create: tsak\n    fields: {}\n")
    broken = runner.invoke(app, ["workflows", "test", "bad", "--path", str(bad)])
    assert broken.exit_code == 1
    assert f"{bad}:4: unknown resource to create 'tsak'; did you mean task?" in broken.output
    assert "Traceback" not in broken.output


def test_test_with_an_event_file_that_the_rule_ignores(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"object_type": "lead", "action": "created", "data": {}}))
    result = runner.invoke(app, ["workflows", "test", "won-deal-handoff", "--event", str(event)])
    assert result.exit_code == 1 and "is not triggered by this event" in result.output


def test_run_fires_the_example_rules_on_the_demo_organization() -> None:
    result = runner.invoke(
        app, ["run", "--path", str(EXAMPLES), "--duration", "10", "--plain", "--console", "off"]
    )
    assert result.exit_code == 0, result.output
    for fired in (
        "hot-deals-check completed",
        "new-lead-hello completed",
        "big-deal-follow-up completed",
        "lost-deal-review waiting_approval",
    ):
        assert fired in result.output, fired


def test_dry_run_decides_every_call_against_close_and_sends_no_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a served simulator standing in for the configured Close."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from closeguard.cli import main; main()", "sim", "serve",
         "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("Close simulator at ")
        key = proc.stdout.readline().strip().removeprefix("API key: ")
        opps = httpx.get(f"{url}/opportunity/", auth=(key, ""), params={"_limit": 100}).json()
        won = next(o for o in opps["data"] if o["status_type"] == "won")
        lead = httpx.get(f"{url}/lead/{won['lead_id']}/", auth=(key, "")).json()
        event = tmp_path / "won.json"
        event.write_text(
            json.dumps(
                {
                    "object_type": "opportunity",
                    "action": "updated",
                    "object_id": won["id"],
                    "lead_id": won["lead_id"],
                    "changed_fields": ["status_id"],
                    "data": won,
                }
            )
        )
        monkeypatch.setenv("CLOSE_API_KEY", key)
        monkeypatch.setenv("CLOSE_BASE_URL", url)
        monkeypatch.setenv("CLOSEGUARD_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
        result = runner.invoke(
            app,
            ["workflows", "test", "won-deal-handoff", "--event", str(event), "--dry-run", "--json"],
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["where"] == "close (dry run)" and data["status"] == "completed"
        writes = [c for c in data["calls"] if c["method"] != "GET"]
        assert len(writes) == 3 and {c["decision"] for c in writes} == {"dry_run"}
        after = httpx.get(f"{url}/lead/{won['lead_id']}/", auth=(key, "")).json()
        assert after["status_id"] == lead["status_id"]  # nothing was sent
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_manual_rule_runs_with_its_parameters(tmp_path: Path) -> None:
    rule = tmp_path / "note-it.yaml"
    rule.write_text(
        "name: note-it\non: manual\nrequired: [lead]\nparams: {text: Checked by hand}\n"
        "steps:\n  - find: lead\n    as: target\n    id: '{{ params.lead }}'\n"
        "    or_fail: 'no lead {{ params.lead }}'\n"
        "  - create: activity.note\n"
        "    fields: {lead_id: '{{ target.id }}', note: '{{ params.text }}'}\n"
    )
    missing = runner.invoke(app, ["workflows", "run", "note-it", "--path", str(rule)])
    assert missing.exit_code == 2 and "needs --param lead=..." in missing.output
    result = runner.invoke(
        app,
        [
            "workflows",
            "test",
            "note-it",
            "--path",
            str(rule),
            "--param",
            "lead=lead_nope",
            "--json",
        ],
    )
    assert result.exit_code == 1
    assert "no lead lead_nope" in json.loads(result.output)["error"]
