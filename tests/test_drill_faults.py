"""The fault matrix's short version (closeguard/drills/faults.py): the packaged workflows'
eval tasks under API and webhook delivery faults complete with nothing lost or doubled."""

from __future__ import annotations

from closeguard.drills import fault_matrix
from closeguard.drills.faults import FaultFigures

CLEAN = ["429-storm", "5xx-5%", "dropped-5%", "latency-2s"]
DELIVERY = ["webhook-duplicates", "webhook-reordered", "webhook-delayed-10min", "webhook-dropped"]


async def test_workflows_under_faults_lose_and_double_nothing() -> None:
    figures = await fault_matrix(CLEAN + DELIVERY, suites=["workflows"])
    for f in figures:
        assert f.tried > 0, f.profile
        assert (f.completed, f.lost, f.duplicated) == (f.tried, 0, 0), (f.profile, f.failures)


def test_failures_are_classified_lost_duplicated_or_other() -> None:
    fig = FaultFigures("x")
    fig.add("a", {"passed": True, "seed": 0})
    fig.add("b", {"passed": False, "seed": 0, "failures": ["tasks where {}: expected 1, found 0"]})
    fig.add("c", {"passed": False, "seed": 0, "failures": ["tasks where {}: expected 1, found 2"]})
    fig.add("d", {"passed": False, "seed": 0, "failures": ["notes: expected none, found 1"]})
    fig.add(
        "e",
        {
            "passed": False,
            "seed": 0,
            "failures": ["tasks t_1: is_complete is False, expected True"],
        },
    )
    fig.add("f", {"passed": False, "seed": 0, "failures": ["timed out after 60s"]})
    assert (fig.tried, fig.completed, fig.lost, fig.duplicated, fig.other) == (6, 1, 2, 2, 1)


async def test_a_workflow_retried_after_a_5xx_on_a_write_still_completes() -> None:
    [figures] = await fault_matrix(["5xx-30%"], suites=["workflows"])
    assert figures.completed == figures.tried, figures.failures
