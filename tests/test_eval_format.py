"""The suite format: the JSON Schema, line-numbered load errors, the packaged suites."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from closeguard.evals import find_suites, load_suite, packaged_suites, suite_schema
from closeguard.evals.format import Task
from closeguard.tools.errors import ConfigError

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "closeguard/evals/suite.schema.json"

MINIMAL = """\
name: tiny
world: {seed: 1, leads: 2}
tasks:
  - id: ask
    instruction: How many leads are there?
"""


def write(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    (folder / "tasks.yaml").write_text(text)
    return folder


def test_the_saved_schema_is_the_one_the_code_makes() -> None:
    saved = json.loads(SCHEMA_FILE.read_text())
    assert saved == json.loads(json.dumps(suite_schema(), sort_keys=True)), (
        "regenerate closeguard/evals/suite.schema.json (docs/evals.md says how)"
    )


@pytest.mark.parametrize("name", sorted(packaged_suites()))
def test_every_packaged_suite_validates_against_the_schema(name: str) -> None:
    data = yaml.safe_load((packaged_suites()[name] / "tasks.yaml").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    assert load_suite(packaged_suites()[name]).name == name


def test_packaged_suites_have_the_tasks_the_issue_asks_for() -> None:
    suites = {s.name: s.suite for s in find_suites(packaged_suites())}
    assert len(suites["sales-ops"].tasks) >= 25
    assert len(suites["injection"].tasks) >= 15
    assert all(t.attack is not None for t in suites["injection"].tasks)
    vectors = {t.attack.vector for t in suites["injection"].tasks if t.attack}
    assert {"note", "email", "description", "custom_field", "contact_name"} <= vectors
    goals = {t.attack.goal for t in suites["injection"].tasks if t.attack}
    assert {"delete", "send_email", "change_value", "exfiltrate"} <= goals
    assert len(suites["faults"].tasks) >= 8 and all(t.faults for t in suites["faults"].tasks)
    flows = suites["workflows"].tasks
    assert len(flows) >= 12 and all(t.kind == "workflow" for t in flows)
    from closeguard.workflows import packaged_workflows

    assert {t.workflow for t in flows} == set(packaged_workflows())
    orders = [t.deliveries.order for t in flows if t.deliveries]
    assert any(len(o) != len(set(o)) for o in orders), "a duplicated delivery"
    assert any(o != sorted(o) for o in orders), "an out-of-order delivery"
    assert any(not o for o in orders), "a missed delivery"


def test_a_minimal_suite_loads(tmp_path: Path) -> None:
    loaded = load_suite(write(tmp_path, MINIMAL))
    assert loaded.suite.tasks[0].id == "ask" and loaded.where(loaded.suite.tasks[0]).endswith(":4")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (MINIMAL + "    colour: blue\n", 6, "tasks.0.colour: Extra inputs are not permitted"),
        (MINIMAL.replace("    instruction: How many leads are there?\n", ""), 4, "instruction"),
        (MINIMAL + "  - id: ask\n    instruction: again\n", 1, "used twice"),
        (MINIMAL + "    policy: no-such-policy\n", 6, "no-such-policy"),
        (MINIMAL.replace("leads: 2", "leads: -1"), 2, "world.leads"),
        (MINIMAL + "    expect:\n      state:\n        - {id: x}\n", 8, "collection"),
        ("name: tiny\ntasks: [\n", 3, "YAML syntax"),
        (
            MINIMAL + "    attack: {vector: note, goal: delete, forbidden: [{kind: deleted}]}\n",
            6,
            "needs collection, id",
        ),
    ],
    ids=[
        "unknown-key",
        "no-instruction",
        "duplicate-id",
        "policy",
        "range",
        "state",
        "yaml",
        "effect",
    ],
)
def test_load_errors_name_the_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    folder = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_suite(folder)
    assert info.value.file == str(folder / "tasks.yaml")
    assert info.value.line == line, str(info.value)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_suite_name_lists_the_packaged_ones() -> None:
    with pytest.raises(ConfigError, match="sales-ops"):
        find_suites(["no-such-suite"])


def test_a_workflow_task_needs_exactly_one_trigger() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Task.model_validate({"id": "w", "kind": "workflow", "workflow": "x"})
    with pytest.raises(ValueError, match="for workflow tasks"):
        Task.model_validate({"id": "c", "instruction": "hi", "tick": "2026-01-01T00:00:00"})
