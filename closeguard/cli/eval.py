"""``closeguard eval``: run eval suites against the simulator, re-print reports, list suites."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from closeguard.agent import resolve_model
from closeguard.cli._app import COMMANDS
from closeguard.cli._common import JsonOpt, console, fail, print_json
from closeguard.evals import (
    OFFLINE_MODELS,
    RunOptions,
    TaskRun,
    build_report,
    find_suites,
    is_keyed_script,
    load_report,
    load_suite,
    packaged_suites,
    previous_trials,
    print_report,
    run_suites,
    suite_schema,
    write_junit,
    write_report,
)

app = typer.Typer(rich_markup_mode=None, help=COMMANDS["eval"].help, no_args_is_help=True)

ReportArg = Annotated[Path, typer.Argument(metavar="REPORT", help="A report written by eval run.")]


@app.command("run")
def run(
    suites: Annotated[
        list[str],
        typer.Argument(metavar="SUITE_OR_PATH...", help="Packaged suite names or suite folders."),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="reference, noop, adversary (offline) or provider:model (openai:..., "
            "anthropic:..., ollama:...).",
        ),
    ] = "reference",
    trials: Annotated[
        int, typer.Option("--trials", "-k", min=1, metavar="K", help="Trials per task.")
    ] = 1,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, metavar="N", help="Trials run at once.")
    ] = 4,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Seed of the first trial's faults.")
    ] = 0,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="FILE",
            help="Write the JSON report here, after every trial; an unfinished report of the "
            "same run is resumed.",
        ),
    ] = None,
    no_guard: Annotated[
        bool,
        typer.Option("--no-guard", help="Run the same calls on an unguarded client."),
    ] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", help="Also write JUnit XML here.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", min=0.1, metavar="SECONDS", help="Per-trial limit (default: the task's)."
        ),
    ] = None,
    price: Annotated[
        str | None,
        typer.Option(
            "--price",
            metavar="IN,OUT",
            help="USD per million input and output tokens, to report the cost.",
        ),
    ] = None,
    min_pass: Annotated[
        float | None,
        typer.Option(
            "--min-pass",
            min=0.0,
            max=1.0,
            metavar="RATE",
            help="Exit 3 when pass^1 is below RATE (0 to 1; default: no threshold).",
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            metavar="ID",
            help="Run only this task (id or suite/id); repeat for more.",
        ),
    ] = None,
) -> None:
    """Run suites: every task K times on a fresh simulator, graded, summarized.

    Exit status: 0 done, 1 a task is broken, 3 pass^1 below --min-pass, 2 bad arguments.
    """
    prices = _prices(price)
    options = RunOptions(
        model=model,
        trials=trials,
        concurrency=concurrency,
        seed=seed,
        guard=not no_guard,
        timeout=timeout,
        tasks=tuple(task or ()),
    )
    if model not in OFFLINE_MODELS and not is_keyed_script(model):
        resolve_model(model)  # a missing extra or key is one line now, not a crash per trial
    loaded = find_suites(suites)
    known = {(s.name, t.id) for s in loaded for t in s.suite.tasks}
    unknown = [
        name
        for name in options.tasks
        if not any(RunOptions(tasks=(name,)).wants(s, t) for s, t in known)
    ]
    if unknown:
        raise fail(f"--task {unknown[0]}: no such task in {', '.join(s.name for s in loaded)}", 2)
    previous: dict[Any, dict[str, Any]] = {}
    if report is not None and report.exists():
        previous = previous_trials(load_report(report), options)
        if previous:
            typer.echo(f"resuming: {len(previous)} trials already in {report}", err=True)
    started = time.perf_counter()
    runs: list[TaskRun] = []
    out = Console(stderr=True)
    with Progress(
        TextColumn("[bold]eval[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=not out.is_terminal,
    ) as bar:
        job = bar.add_task(f"{model} on {', '.join(s.name for s in loaded)}", total=None)

        def planned(n: int) -> None:
            bar.update(job, total=n)

        def saved(_run: TaskRun, _trial: int) -> None:
            bar.advance(job)
            if report is not None:
                elapsed = time.perf_counter() - started
                write_report(report, build_report(runs, options, wall_seconds=elapsed))

        asyncio.run(
            run_suites(
                loaded, options, previous=previous, on_trial=saved, on_plan=planned, into=runs
            )
        )
    final = build_report(runs, options, wall_seconds=time.perf_counter() - started, prices=prices)
    if report is not None:
        write_report(report, final)
    if junit is not None:
        write_junit(junit, final)
    print_report(final, console(120))
    summary = final["summary"]
    if summary["broken"]:
        raise typer.Exit(1)
    if min_pass is not None and summary.get("pass^1", 0.0) < min_pass:
        rate = 100 * summary.get("pass^1", 0.0)
        typer.echo(f"pass^1 {rate:.1f}% is below --min-pass {100 * min_pass:.1f}%", err=True)
        raise typer.Exit(3)


def _prices(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        inp, out = (float(x) for x in text.split(","))
    except ValueError:
        raise fail("--price takes two numbers, IN,OUT (USD per million tokens)", 2) from None
    return inp, out


@app.command("report")
def report(path: ReportArg, as_json: JsonOpt = False) -> None:
    """Print a report again (the summary, or all of it as JSON)."""
    data = load_report(path)
    if as_json:
        print_json(data)
        return
    print_report(data, console(120))


@app.command("list")
def list_suites(as_json: JsonOpt = False) -> None:
    """The packaged suites and their task counts."""
    rows: list[dict[str, Any]] = []
    for name, folder in packaged_suites().items():
        suite = load_suite(folder).suite
        kinds = sorted({t.kind for t in suite.tasks})
        rows.append(
            {
                "name": name,
                "tasks": len(suite.tasks),
                "attacks": sum(1 for t in suite.tasks if t.attack is not None),
                "kinds": ",".join(kinds),
                "description": suite.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table()
    for col in ("suite", "tasks", "attacks", "kinds", "description"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("name", "tasks", "attacks", "kinds", "description")))
    console(100).print(table)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a suite's tasks.yaml."""
    typer.echo(json.dumps(suite_schema(), indent=2))


__all__ = ["app"]
