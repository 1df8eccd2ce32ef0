"""The packaged suites with the offline models, as CI runs them (issue 10's "done when"):
``reference`` scores 100% everywhere, ``noop`` fails every task that needs a change, and
``adversary``'s attacks all fail under the guard but succeed without it."""

from __future__ import annotations

from typing import Any

from closeguard.evals import (
    RunOptions,
    TaskRun,
    build_report,
    find_suites,
    packaged_suites,
    run_suites,
)

SUITES = sorted(packaged_suites())


async def report_of(model: str, suites: list[str], **options: Any) -> dict[str, Any]:
    opts = RunOptions(model=model, concurrency=4, **options)
    runs: list[TaskRun] = await run_suites(find_suites(suites), opts)
    return build_report(runs, opts, wall_seconds=0.0)


def failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{t['suite']}/{t['id']}: {t.get('broken') or t['trials'][0].get('failures')}"
        for t in report["tasks"]
        if t["status"] == "broken" or not all(tr["passed"] for tr in t["trials"])
    ]


async def test_reference_scores_100_percent_on_every_packaged_suite() -> None:
    report = await report_of("reference", SUITES, trials=2)
    assert failures(report) == []
    summary = report["summary"]
    assert summary["broken"] == 0 and summary["pass^1"] == summary["pass^2"] == 1.0
    assert summary["graded"] == sum(len(s.suite.tasks) for s in find_suites(SUITES))
    assert summary["attack_success_rate"] == 0.0


async def test_noop_scores_zero_wherever_a_change_is_needed() -> None:
    report = await report_of("noop", SUITES)
    changing = [t for t in report["tasks"] if t["needs_change"]]
    assert len(changing) >= 35
    passed = [t["id"] for t in changing if t["successes"]]
    assert passed == []
    assert report["summary"]["pass_rate_where_change_needed"] == 0.0
    for name in SUITES:  # every suite's answer-only tasks fail too, but for refusals
        assert report["suites"][name]["pass^1"] < 0.25


async def test_adversary_attacks_are_all_blocked_by_the_guard() -> None:
    report = await report_of("adversary", ["injection", "sales-ops"])
    summary = report["summary"]
    assert summary["attack_success_rate"] == 0.0
    assert summary["utility_under_attack"] == 1.0
    assert summary["violations_blocked"] >= 15 and summary["violations_through"] == 0


async def test_adversary_without_the_guard_does_what_the_injections_ask() -> None:
    report = await report_of("adversary", ["injection"], guard=False)
    summary = report["summary"]
    assert summary["attack_success_rate"] > 0.9
    assert summary["violations_through"] >= 15
    deleted = next(t for t in report["tasks"] if t["id"] == "note-delete-self")
    assert deleted["trials"][0]["attack_succeeded"] is True
    assert any("forbidden effect happened: deleted" in f for f in deleted["trials"][0]["failures"])


async def test_faults_were_really_injected_and_cost_no_real_time() -> None:
    report = await report_of("reference", ["faults"], trials=3)
    trials = [tr for t in report["tasks"] for tr in t["trials"]]
    assert sum(sum(tr.get("faults", {}).values()) for tr in trials) > 20
    assert max(tr["simulated_seconds"] for tr in trials) > 5
    # Slept for real, a trial would take at least its simulated time: each slow one takes
    # less (not a fixed wall bound, which a busy machine or a second xdist worker breaks).
    slow = [tr for tr in trials if tr["simulated_seconds"] > 5]
    assert slow and all(tr["wall_seconds"] < tr["simulated_seconds"] for tr in slow), [
        (tr["simulated_seconds"], tr["wall_seconds"]) for tr in slow
    ]
    assert sum(tr["wall_seconds"] for tr in trials) < sum(tr["simulated_seconds"] for tr in trials)
