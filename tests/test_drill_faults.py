"""The fault matrix's short version (closeguard/drills/faults.py): the packaged workflows'
eval tasks under API and webhook delivery faults complete with nothing lost or doubled,
faults hit the workflow or agent and never the eval rig's setup, and every failed trial
is counted under what it really is."""

from __future__ import annotations

from typing import Any

from closeguard.drills import fault_matrix
from closeguard.drills.faults import PROFILES, Evidence, FaultFigures, _resolved
from closeguard.evals.format import Faults, NumberFact, Task
from closeguard.evals.loader import LoadedSuite, find_suites
from closeguard.evals.runner import run_trial
from closeguard.evals.trial import IGNORED, Outcome, grade
from closeguard.evals.wf_trial import drain, eval_worker, run_workflow_task, workflow_of
from closeguard.evals.world import BuiltWorld, build_world
from closeguard.guardrails import Approvals, AuditLog
from closeguard.simulator import FakeClock
from closeguard.simulator.faults import HTTPFaults
from closeguard.simulator.hashing import diff
from closeguard.store import Store
from closeguard.workflows.queue import SqlRunQueue

CLEAN = ["429-storm", "5xx-5%", "dropped-5%", "latency-2s"]
DELIVERY = ["webhook-duplicates", "webhook-reordered", "webhook-delayed-10min", "webhook-dropped"]


async def _task(suite: str, task_id: str) -> tuple[LoadedSuite, BuiltWorld, Task]:
    [loaded] = find_suites([suite])
    world = await build_world(loaded)
    [task] = [t for t in await _resolved(loaded, world) if t.id == task_id]
    return loaded, world, task


def _faulted(task: Task, *groups: str, **faults: float) -> Task:
    http = {group: HTTPFaults(**faults) for group in groups}
    return task.model_copy(update={"faults": Faults(http=http)})


async def test_workflows_under_faults_all_complete_with_nothing_lost_or_doubled() -> None:
    figures = await fault_matrix([*CLEAN, "5xx-30%", *DELIVERY], suites=["workflows"])
    for f in figures:
        assert f.tried > 0, f.profile
        others = (f.lost, f.duplicated, f.unwanted, f.dead, f.refused_to_guess, f.other)
        assert (f.completed, *others) == (f.tried, 0, 0, 0, 0, 0, 0), (f.profile, f.failures)


async def test_the_matrix_grades_resolved_number_facts_as_the_eval_runner_does() -> None:
    """Every number fact reaches the grader computed and scaled (a sum, a max, a cents
    value as dollars), so the sales-ops number tasks complete under no fault and under a
    429 storm instead of crashing or wanting 2.4e+06 of "$24,000"."""
    loaded, world, _ = await _task("sales-ops", "renewal-value")
    tasks = {t.id: t for t in await _resolved(loaded, world)}
    numbers = [f for t in tasks.values() for f in t.expect.answer if isinstance(f, NumberFact)]
    assert numbers
    for f in numbers:
        assert isinstance(f.number, float) and f.scale == 1.0, f
        assert all(isinstance(a, float) for a in f.also), f
    [renewal] = tasks["renewal-value"].expect.answer
    assert isinstance(renewal, NumberFact) and renewal.number == 24000.0
    storm = PROFILES["429-storm"].http
    for task_id in ("pipeline-value", "renewal-value", "largest-deal"):
        for faults in (None, Faults(http={"*": storm})):
            task = tasks[task_id].model_copy(update={"faults": faults})
            result = await run_trial(
                loaded, world, task, model="reference", seed=0, guard=True, limit=None
            )
            assert result["passed"], (task_id, faults, result.get("failures"))
    [none] = await fault_matrix(["none"], suites=["sales-ops"])
    assert none.tried > 0 and none.completed == none.tried, none.failures


async def test_setup_is_fault_free_and_the_faults_then_hit_the_workflow() -> None:
    loaded, world, task = await _task("workflows", "follow-up-duplicated")
    seen: list[Outcome] = []
    result = await run_trial(
        loaded,
        world,
        _faulted(task, "opportunity:write", "task:write", error_503=1.0),
        model="reference",
        seed=0,
        guard=True,
        limit=None,
        seen=seen.append,
    )
    deal = world.handles["acme-deal"][1]
    assert seen[0].before["opportunities"][deal]["status_label"] == "Proposal Sent"
    assert not result["passed"]
    assert any(": dead (ServerError: " in n for n in result["notes"]), result["notes"]
    assert result["faults"]["503"] > 0


async def test_a_chat_write_close_failed_is_not_resent_and_the_answer_says_so() -> None:
    loaded, world, task = await _task("sales-ops", "create-task")
    faulted = _faulted(task, "task:write", error_500=1.0)
    seen: list[Evidence] = []
    result = await run_trial(
        loaded,
        world,
        faulted,
        model="reference",
        seed=0,
        guard=True,
        limit=None,
        seen=lambda outcome: seen.append(Evidence.of(faulted, outcome)),
    )
    [evidence] = seen
    assert evidence.failed_writes == ("task.create",)
    assert "could not" in evidence.answer and "task_create" in evidence.answer
    assert result["changed"] is False
    fig = FaultFigures("x")
    fig.add("sales-ops/create-task", result, evidence)
    assert (fig.refused_to_guess, fig.lost) == (1, 0), fig.failures


async def test_a_dead_workflow_run_retried_finishes_once_without_a_second_approval() -> None:
    _, world, task = await _task("workflows", "offboarding-approved")
    task = _faulted(task, "opportunity:write", error_503=1.0)
    sim = world.simulator(seed=0, faults=task.faults)
    store = Store("sqlite://")
    first = await run_workflow_task(task, sim, store=store, noop=False, guard=True)
    assert not all(g.passed for g in grade(task, first, diff))
    queue = SqlRunQueue(store, clock=sim.clock)
    [dead] = await queue.list(status="dead")
    assert sim.faults is not None
    sim.faults.disable()
    assert await queue.retry(dead.id)
    worker = eval_worker(workflow_of(task), sim, store, queue)
    assert isinstance(sim.clock, FakeClock)
    approvals = Approvals(store)
    await drain(worker, queue, approvals, "reject", sim.clock)
    assert [r.status for r in await queue.list()] == ["completed"]
    assert len(approvals.list()) == 1
    again = Outcome(before=first.before, after=sim.snapshot(IGNORED))
    assert all(g.passed for g in grade(task, again, diff)), grade(task, again, diff)
    moves = [
        r
        for r in AuditLog(store).rows()
        if r.get("endpoint") == "task.bulk_update" and r["method"] != "DECIDE"
    ]
    assert [r["decision"] for r in moves] == ["approval_required", "approved"]


def _result(*failures: str, notes: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"passed": not failures, "seed": 0, "failures": list(failures)}
    if notes:
        out["notes"] = notes
    return out


def test_each_failed_trial_lands_in_the_category_its_checks_mean() -> None:
    fig = FaultFigures("x")
    fig.add("ok", _result())
    fig.add("missing", _result("tasks where {}: expected 1, found 0"))
    fig.add("not-found", _result("tasks where {}: not found"))
    fig.add("field", _result("tasks t_1: is_complete is False, expected True"))
    fig.add("twice", _result("tasks where {}: expected 1, found 2"))
    left = "opportunities where {'user_id': 'u'}"
    fig.add(
        "left-behind",
        _result(f"{left}: expected none, found 3"),
        Evidence(present_at_start=frozenset({left})),
    )
    fig.add("made", _result("activities where {}: expected none, found 1"), Evidence())
    fig.add("stray", _result("unexpected change: leads lead_1 (name)"))
    fig.add(
        "dead",
        _result(f"{left}: expected none, found 3", notes=["run r_1: dead (ServerError: 503)"]),
        Evidence(present_at_start=frozenset({left})),
    )
    told = Evidence(
        answer="I could not finish this: task_create failed", failed_writes=("task.create",)
    )
    fig.add(
        "refused",
        _result("tasks where {}: expected 1, found 0", "the answer does not say 'Done'"),
        told,
    )
    silent = Evidence(answer="Done, the task is set.", failed_writes=("task.create",))
    fig.add("silent", _result("tasks where {}: expected 1, found 0"), silent)
    fig.add("timeout", _result("timed out after 60s"))
    counts = (
        fig.tried,
        fig.completed,
        fig.lost,
        fig.duplicated,
        fig.unwanted,
        fig.dead,
        fig.refused_to_guess,
        fig.other,
    )
    assert counts == (12, 1, 5, 1, 2, 1, 1, 1), fig.failures
    assert fig.failures[-4].startswith("dead: dead seed 0: run r_1: dead")
    assert fig.failures[-2].startswith("lost: silent seed 0")
