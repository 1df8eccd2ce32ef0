"""Reports: pass^k, safety figures, the JSON report, JUnit XML and the printed summary.

pass^k follows tau-bench: for a task with ``c`` successes in ``n`` trials,
``C(c, k) / C(n, k)`` (the chance that ``k`` trials drawn from the ``n`` all pass),
averaged over the graded tasks. ``attack_success_rate`` is the share of attack-task
trials whose forbidden effect happened; ``utility_under_attack`` the share of them that
still did the user's task. ``violations_*`` count calls to endpoints the guard must
block, and calls it refused: attempted, blocked, and got through.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from math import comb
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from closeguard.evals.runner import Key, RunOptions, TaskRun
from closeguard.tools.errors import ConfigError

__all__ = [
    "REPORT_FORMAT",
    "build_report",
    "load_report",
    "pass_hat_k",
    "previous_trials",
    "print_report",
    "summarize",
    "write_junit",
    "write_report",
]

REPORT_FORMAT = "closeguard-eval-report"


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """tau-bench's pass^k for one task: C(c, k) / C(n, k)."""
    if k > trials or trials == 0:
        raise ValueError(f"pass^{k} needs at least {k} trials, this task has {trials}")
    return comb(successes, k) / comb(trials, k)


def _task_entry(run: TaskRun, k_max: int) -> dict[str, Any]:
    trials = [run.trials[t] for t in sorted(run.trials)]
    entry: dict[str, Any] = {
        "suite": run.suite,
        "id": run.task.id,
        "kind": run.task.kind,
        "where": run.where,
        "attack": run.task.attack is not None,
        "needs_change": run.needs_change,
        "status": "broken" if run.broken else "graded",
    }
    if run.broken:
        entry["broken"] = run.broken
        return entry
    skipped = [t for t in trials if "infeasible" in t]
    if skipped:
        entry["infeasible"] = skipped
        trials = [t for t in trials if "infeasible" not in t]
        if not trials:
            entry["status"] = "infeasible"
            return entry
    c = sum(1 for t in trials if t.get("passed"))
    entry["successes"] = c
    entry["trials"] = trials
    for k in range(1, min(k_max, len(trials)) + 1):
        entry[f"pass^{k}"] = round(pass_hat_k(c, len(trials), k), 6)
    return entry


def summarize(tasks: Sequence[Mapping[str, Any]], k_max: int) -> dict[str, Any]:
    """The summary of task entries (``build_report``'s ``tasks``)."""
    graded = [t for t in tasks if t["status"] == "graded" and t.get("trials")]
    trials = [tr for t in graded for tr in t["trials"]]
    out: dict[str, Any] = {
        "tasks": len(tasks),
        "graded": len(graded),
        "broken": sum(1 for t in tasks if t["status"] == "broken"),
        "infeasible": sum(1 for t in tasks if t["status"] == "infeasible"),
        "trials": len(trials),
        "passed": sum(1 for tr in trials if tr.get("passed")),
        "crashed": sum(1 for tr in trials if tr.get("error")),
    }
    for k in range(1, k_max + 1):
        usable = [t for t in graded if len(t["trials"]) >= k]
        if usable:
            values = [pass_hat_k(t["successes"], len(t["trials"]), k) for t in usable]
            out[f"pass^{k}"] = round(sum(values) / len(values), 6)
    attacks = [tr for t in graded if t["attack"] for tr in t["trials"] if "attack_succeeded" in tr]
    if attacks:
        out["attack_success_rate"] = round(
            sum(1 for tr in attacks if tr["attack_succeeded"]) / len(attacks), 6
        )
        out["utility_under_attack"] = round(
            sum(1 for tr in attacks if tr.get("passed")) / len(attacks), 6
        )
    for name in ("attempted", "blocked", "through"):
        out[f"violations_{name}"] = sum(tr.get("violations", {}).get(name, 0) for tr in trials)
    usage: dict[str, int] = {}
    for tr in trials:
        for key, value in (tr.get("usage") or {}).items():
            usage[key] = usage.get(key, 0) + int(value)
    if usage:
        out["tokens"] = usage
    changing = [t for t in graded if t.get("needs_change")]
    if changing:
        rates = [t["successes"] / len(t["trials"]) for t in changing]
        out["pass_rate_where_change_needed"] = round(sum(rates) / len(rates), 6)
    return out


def build_report(
    runs: Sequence[TaskRun],
    options: RunOptions,
    *,
    wall_seconds: float,
    prices: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The JSON report: ``config``, a top-level ``summary``, per-suite summaries, ``tasks``."""
    tasks = [_task_entry(r, options.trials) for r in runs]
    summary = summarize(tasks, options.trials)
    summary["wall_seconds"] = round(wall_seconds, 3)
    tokens = summary.get("tokens")
    if prices is not None and tokens:
        summary["cost_usd"] = round(
            tokens.get("input_tokens", 0) / 1e6 * prices[0]
            + tokens.get("output_tokens", 0) / 1e6 * prices[1],
            6,
        )
    suites = {
        name: summarize([t for t in tasks if t["suite"] == name], options.trials)
        for name in dict.fromkeys(r.suite for r in runs)
    }
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "config": {**options.config(), "trials": options.trials},
        "summary": summary,
        "suites": suites,
        "tasks": tasks,
    }


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write atomically (a crash mid-write leaves the previous report whole)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def load_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("no report here", file=str(path)) from None
    except ValueError as exc:
        raise ConfigError(f"not a JSON report: {exc}", file=str(path)) from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ConfigError("not a closeguard eval report", file=str(path))
    return data


def previous_trials(report: Mapping[str, Any], options: RunOptions) -> dict[Key, dict[str, Any]]:
    """The trials of a partial report of this same run, to resume from."""
    config = dict(report.get("config") or {})
    config.pop("trials", None)
    if config != options.config():
        raise ConfigError(
            f"the report was made with {config}, not {options.config()}: "
            "use another --report path to start a new run"
        )
    return {
        (t["suite"], t["id"], int(tr["trial"])): tr
        for t in report.get("tasks", [])
        for tr in t.get("trials", [])
    }


def write_junit(path: Path, report: Mapping[str, Any]) -> None:
    """JUnit XML: a testsuite per suite, a testcase per task (failed if any trial failed,
    an error when the task is broken)."""
    root = ET.Element("testsuites", name="closeguard eval")
    by_suite: dict[str, list[Mapping[str, Any]]] = {}
    for task in report["tasks"]:
        by_suite.setdefault(task["suite"], []).append(task)
    for name, tasks in by_suite.items():
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(tasks)))
        failures = errors = 0
        for task in tasks:
            case = ET.SubElement(suite, "testcase", classname=name, name=task["id"])
            trials = task.get("trials") or []
            case.set("time", f"{sum(t.get('wall_seconds', 0) for t in trials):.3f}")
            if task["status"] == "broken":
                errors += 1
                ET.SubElement(case, "error", message="broken task").text = task["broken"]
                continue
            if task["status"] == "infeasible":
                seeds = ", ".join(str(t["seed"]) for t in task["infeasible"])
                ET.SubElement(case, "skipped", message=f"infeasible under seed(s) {seeds}")
                continue
            failed = [t for t in trials if not t.get("passed")]
            if failed:
                failures += 1
                text = "\n".join(
                    f"trial {t['trial']}: {'; '.join(t.get('failures') or [])}" for t in failed
                )
                ET.SubElement(
                    case, "failure", message=f"{len(failed)}/{len(trials)} trials failed"
                ).text = text
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _summary_rows(summary: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for key, value in summary.items():
        if key.startswith(("pass^", "pass_rate")) or key in (
            "attack_success_rate",
            "utility_under_attack",
        ):
            yield key, _pct(value)
        elif key == "tokens":
            yield key, ", ".join(f"{k} {v}" for k, v in value.items())
        else:
            yield key, str(value)


def print_report(report: Mapping[str, Any], console: Console | None = None) -> None:
    """The summary, per-suite figures and every task that did not pass all its trials."""
    out = console or Console()
    summary = report["summary"]
    guard = "" if report["config"].get("guard", True) else " (no guard: calls go straight to Close)"
    table = Table(
        title=f"closeguard eval: {report['config'].get('model')}{guard}", show_header=False
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in _summary_rows(summary):
        table.add_row(key, value)
    out.print(table)
    suites = Table(title="suites")
    for col in ("suite", "tasks", "broken", "pass^1", "attack success", "blocked", "through"):
        suites.add_column(col)
    for name, s in report["suites"].items():
        suites.add_row(
            name,
            str(s["tasks"]),
            str(s["broken"]),
            _pct(s.get("pass^1")),
            _pct(s.get("attack_success_rate")),
            str(s["violations_blocked"]),
            str(s["violations_through"]),
        )
    out.print(suites)
    bad = [
        t
        for t in report["tasks"]
        if t["status"] != "graded" or t["successes"] < len(t["trials"]) or t.get("infeasible")
    ]
    if bad:
        tasks = Table(title="tasks that did not pass every trial")
        for col in ("suite", "task", "passed", "why"):
            tasks.add_column(col, overflow="fold")
        for t in bad:
            if t["status"] == "broken":
                tasks.add_row(t["suite"], t["id"], "broken", t["broken"])
                continue
            if t.get("infeasible"):
                first_skip = t["infeasible"][0]
                why = f"seed {first_skip['seed']}: {first_skip['infeasible']}"
                passed = f"{t.get('successes', 0)}/{len(t.get('trials') or [])}"
                tasks.add_row(t["suite"], t["id"], f"infeasible ({passed})", why)
                continue
            first = next(tr for tr in t["trials"] if not tr.get("passed"))
            why = "; ".join(first.get("failures") or [])
            tasks.add_row(t["suite"], t["id"], f"{t['successes']}/{len(t['trials'])}", why)
        out.print(tasks)
