"""The workflow loader: the packaged library and its policies, and users' own modules, whose
every mistake is one ConfigError line naming the file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from closeguard.guardrails import Policy
from closeguard.guardrails.static import possible_access, static_decisions
from closeguard.simulator import Simulator
from closeguard.store import Store
from closeguard.tools import ConfigError
from closeguard.tools.catalog import ENDPOINTS
from closeguard.workflows import EventTrigger, Workflow, load_workflows, packaged_workflows
from closeguard.workflows.rules import RuleWorkflow
from closeguard.workflows.testing import run_workflow

PACKAGED = {
    "follow-up-on-status-change",
    "new-lead-triage",
    "stale-opportunity-nudge",
    "overdue-task-digest",
    "won-deal-handoff",
    "call-summary",
    "duplicate-lead-merge",
    "rep-offboarding",
    "call-follow-up-draft",
}
LIBRARY = Path(__file__).resolve().parents[1] / "closeguard" / "workflows" / "library"

# -- the packaged library -------------------------------------------------------------------


def test_nine_packaged_workflows_one_a_file_each_with_its_own_policy() -> None:
    packaged = packaged_workflows()
    assert set(packaged) == PACKAGED
    modules = {p.stem for p in LIBRARY.glob("*.py") if not p.name.startswith("_")}
    rules = {p.stem for p in (LIBRARY / "rules").glob("*.yaml")}
    assert not modules & {r.replace("-", "_") for r in rules}
    assert modules | {r.replace("-", "_") for r in rules} == {
        name.replace("-", "_") for name in PACKAGED
    }
    for name, workflow in packaged.items():
        if isinstance(workflow, RuleWorkflow):  # the policy derived from the rule's steps
            assert workflow.load_policy().name == name and name in rules
        else:
            assert workflow.policy == name and workflow.load_policy().name == name
        assert workflow.description and workflow.steps
        assert all(step.__doc__ for step in workflow.steps), name


def _only_completes(rules: Any) -> bool:
    """The rules let a task update do nothing but mark the task complete."""
    by_field = {r.field: r for r in rules}
    done = by_field.get("is_complete")
    others = all(
        by_field.get(f) is not None and by_field[f].immutable
        for f in ("text", "assigned_to", "date")
    )
    return done is not None and done.required and list(done.allowed or ()) == [True] and others


@pytest.mark.parametrize("workflow", packaged_workflows().values(), ids=lambda w: w.name)
def test_packaged_policies_are_least_privilege(workflow: Workflow) -> None:
    """Nothing granted on everything; no destructive call without a person's yes; an event
    workflow writes only on the lead it was triggered for."""
    policy = workflow.load_policy()
    assert "*" not in policy.grants
    table = static_decisions(policy)
    writes = [
        (ep, level)
        for ep in ENDPOINTS
        for level in possible_access(ep)
        if level != "read" and table[(ep.name, level)].outcome != "deny"
    ]
    assert writes, "a workflow that cannot write does nothing"
    for ep, level in writes:
        if level == "destructive":
            assert table[(ep.name, level)].outcome == "approve", ep.name
        if isinstance(workflow.trigger, EventTrigger):
            rules = policy.constraints.get(ep.name, ())
            scoped = {r.field for r in rules if r.scope}
            if ep.name == "task.update" and _only_completes(rules):
                continue  # a task's id names no lead: completing is all it may do
            assert scoped & {"lead_id", "id", "source"}, f"{ep.name} is not lead-scoped"
    assert policy.limits.per_run.calls or policy.limits.per_run.writes


def test_an_approval_gates_exactly_the_merge_and_the_offboarding() -> None:
    gated = {
        name
        for name, w in packaged_workflows().items()
        if any(d.outcome == "approve" for d in static_decisions(w.load_policy()).values())
    }
    assert gated == {"duplicate-lead-merge", "rep-offboarding"}


# -- users' modules ---------------------------------------------------------------------------

GOOD = '''
from closeguard.workflows import EventTrigger, Workflow


async def note_it(ctx):
    """Leave a note."""
    lead = ctx.event["lead_id"]
    await ctx.effect("note", lambda: ctx.client.notes.create({"lead_id": lead, "note": "hi"}))


WORKFLOW = Workflow(
    name="{name}",
    trigger=EventTrigger("lead", "created"),
    policy="{policy}",
    steps=(note_it,),
)
'''
POLICY = """
name: note-writer
grants: {activity.note: write}
constraints:
  activity.note.create:
    lead_id: {scope: triggered}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def good(path: Path, name: str = "say-hi", policy: str = "note-writer.yaml") -> Path:
    write(path.parent / "note-writer.yaml", POLICY)
    return write(path, GOOD.replace("{name}", name).replace("{policy}", policy))


async def test_a_users_module_loads_and_runs_under_its_own_policy(
    tmp_path: Path, store: Store
) -> None:
    [workflow] = load_workflows(good(tmp_path / "flows" / "hi.py")).values()
    assert isinstance(workflow.policy, Policy) and workflow.policy.name == "note-writer"
    sim = Simulator(seed=1, leads=3)
    lead_id = next(iter(sim.state["leads"]))
    event = {"id": "ev_1", "object_type": "lead", "action": "created", "lead_id": lead_id}

    result = await run_workflow(
        workflow, transport=sim.transport(), api_key=sim.api_key, event=event, store=store
    )

    assert result.status == "completed", result.error
    notes = [a for a in sim.state["activities"].values() if a.get("note") == "hi"]
    assert [n["lead_id"] for n in notes] == [lead_id]


def test_a_folder_loads_every_module_and_skips_helpers(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    good(folder / "a.py", "first")
    write(folder / "_shared.py", "NAME = 'second'\n")
    write(
        folder / "b.py",
        """
        from _shared import NAME
        from closeguard.workflows import ManualTrigger, Workflow

        async def step(ctx):
            pass

        WORKFLOWS = [Workflow(NAME, trigger=ManualTrigger(), policy="read-only", steps=(step,))]
        """,
    )
    assert list(load_workflows(folder)) == ["first", "second"]


def error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_workflows(path)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    return info.value


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.py", "async def step(ctx):\n    pass\n\nWORKFLOW = (\n")
    exc = error(path)
    assert exc.file == str(path) and exc.line == 4 and "syntax error" in str(exc)


def test_an_exception_while_importing_points_at_the_users_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "boom.py",
        """
        from datetime import timedelta
        from closeguard.workflows import ScheduleTrigger

        TRIGGER = ScheduleTrigger(cron="0 8 * * *", every=timedelta(hours=1))
        """,
    )
    exc = error(path)
    assert (exc.file, exc.line) == (str(path), 4)  # the user's line, not closeguard's
    assert str(exc).startswith(f"{path}:4: ValueError while loading: a ScheduleTrigger takes")


def test_an_exception_in_a_helper_module_points_at_the_helper(tmp_path: Path) -> None:
    write(tmp_path / "_helpers.py", "X = 1\nY = 1 / 0\n")
    path = write(tmp_path / "uses.py", "import _helpers\n")
    exc = error(path)
    assert (exc.file, exc.line) == (str(tmp_path / "_helpers.py"), 2)
    assert "ZeroDivisionError" in str(exc)


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("X = 1\n", None, "defines neither WORKFLOW nor WORKFLOWS"),
        ("import os\n\nWORKFLOW = os\n", 3, "WORKFLOW must be a closeguard Workflow, not module"),
        ("WORKFLOWS = 3\n", 1, "WORKFLOWS must be a list, tuple or mapping of Workflow, not int"),
    ],
)
def test_a_missing_or_mistyped_export(
    tmp_path: Path, source: str, line: int | None, message: str
) -> None:
    path = write(tmp_path / "flow.py", source)
    exc = error(path)
    assert (exc.file, exc.line) == (str(path), line) and message in str(exc)


def test_a_step_that_is_not_async(tmp_path: Path) -> None:
    path = write(
        tmp_path / "flow.py",
        """
        from closeguard.workflows import ManualTrigger, Workflow

        def step(ctx):
            return None

        WORKFLOW = Workflow(name="sync", trigger=ManualTrigger(), policy="read-only", steps=(step,))
        """,
    )
    exc = error(path)
    assert exc.line == 6 and "step 'step' must be an async function" in str(exc)


def test_an_unknown_policy_names_the_workflow_file(tmp_path: Path) -> None:
    path = good(tmp_path / "flow.py", policy="no-such-policy")
    exc = error(path)
    assert (exc.file, exc.line) == (str(path), 10)
    assert "workflow 'say-hi': no policy file or shipped policy named 'no-such-policy'" in str(exc)


def test_a_broken_policy_file_names_the_policy_line(tmp_path: Path) -> None:
    path = good(tmp_path / "flow.py")
    write(tmp_path / "note-writer.yaml", "name: x\ngrants: {activity.note: writ}\n")
    exc = error(path)
    assert exc.file == str(tmp_path / "note-writer.yaml") and exc.line == 2


def test_a_name_used_twice(tmp_path: Path) -> None:
    good(tmp_path / "a.py", "same")
    second = good(tmp_path / "b.py", "same")
    exc = error(tmp_path)
    assert (exc.file, exc.line) == (str(second), 10)
    assert f"'same' is already used in {tmp_path / 'a.py'}" in str(exc)


def test_a_missing_path_or_an_empty_folder(tmp_path: Path) -> None:
    assert "not found" in str(error(tmp_path / "nope.py"))
    assert "no workflow modules" in str(error(tmp_path))
