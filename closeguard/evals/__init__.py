"""Eval suites: grade agents and workflows against the simulator, for utility, safety and
resilience.

Laid out the tau2 way: code in modules, suites as data. ``format`` (the suite format and
its JSON Schema), ``loader`` (line-numbered errors), ``world`` (a suite's world and fixture
handles), ``graders`` (state, answer, actions from the audit log, guard), ``models``
(offline ``reference``, ``noop`` and ``adversary``, keyed ``scripted:`` files and the
shipped wrong agents in ``wrong_agents/``), ``trial`` / ``wf_trial`` (one chat or
workflow trial), ``runner`` (trials, concurrency, timeouts, resume) and ``report``
(pass^k, safety figures, JSON, JUnit). Packaged suites live in ``suites/NAME/``.
Depends on ``simulator``, ``agent`` and ``workflows``; see ``docs/evals.md``.
"""

from closeguard.evals.format import Suite, Task, suite_schema
from closeguard.evals.loader import LoadedSuite, find_suites, load_suite, packaged_suites
from closeguard.evals.models import (
    OFFLINE_MODELS,
    is_keyed_script,
    wrong_agent_targets,
    wrong_agents,
)
from closeguard.evals.report import (
    build_report,
    load_report,
    pass_hat_k,
    previous_trials,
    print_report,
    write_junit,
    write_report,
)
from closeguard.evals.runner import RunOptions, TaskRun, run_suites

__all__ = [
    "OFFLINE_MODELS",
    "LoadedSuite",
    "RunOptions",
    "Suite",
    "Task",
    "TaskRun",
    "build_report",
    "find_suites",
    "is_keyed_script",
    "load_report",
    "load_suite",
    "packaged_suites",
    "pass_hat_k",
    "previous_trials",
    "print_report",
    "run_suites",
    "suite_schema",
    "write_junit",
    "write_report",
    "wrong_agent_targets",
    "wrong_agents",
]
