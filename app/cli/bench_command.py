"""`planexec bench`: planexec against a ReAct baseline on the same tasks (app/bench/).

Registered on the CLI's Typer app by `register(app)`; the benchmark's modules are imported only
when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

EXIT_GATE = 1  # the CI gate failed: a ratio got worse than its baseline allows
EXIT_CONFIG = 4  # the CLI's exit code for a configuration or input error (nothing ran)


def register(app: typer.Typer) -> None:
    """Add the `bench` command to `app`."""

    @app.command("bench")
    def bench(
        quick: Annotated[bool, typer.Option("--quick", help="Run each cell once.")] = False,
        repeat: Annotated[
            int, typer.Option(min=1, help="Runs per cell without --quick (fastest kept).")
        ] = 3,
        task: Annotated[
            list[str] | None, typer.Option("--task", help="Only this task (repeatable).")
        ] = None,
        json_file: Annotated[
            Path | None, typer.Option("--json", help="Write the rows to this JSON file.")
        ] = None,
        check: Annotated[
            Path | None,
            typer.Option(help="Fail (exit 1) when a ratio is >10% worse than this baseline."),
        ] = None,
        write_baseline: Annotated[
            Path | None, typer.Option(help="Write this run's ratios as the new baseline.")
        ] = None,
        max_concurrency: Annotated[
            int | None, typer.Option(min=1, help="planexec's max_concurrency (default: Context's).")
        ] = None,
        plan_cache: Annotated[
            bool,
            typer.Option(
                "--plan-cache",
                help="Instead: each task's second run as a template (plan from the cache) "
                "against its first (app/bench/plan_cache.py).",
            ),
        ] = False,
    ) -> None:
        """Run the same tasks through planexec and a ReAct agent (with and without parallel
        tool calls) and print calls, tokens, cost, wall time and the ratios."""
        from rich.console import Console

        from app.bench.report import (
            baseline_document,
            gate_failures,
            load_baseline,
            measure,
            print_table,
            ratios,
        )
        from app.bench.tasks import all_tasks, task_names
        from app.cli.text import labelled, plain

        console, err = Console(), Console(stderr=True)
        if not console.is_terminal:  # piped or in CI: the whole table, not one cut to 80 columns
            console = Console(width=120)
        wanted = task or task_names()
        unknown = [t for t in wanted if t not in task_names()]
        if unknown:
            err.print(
                labelled(
                    "error:",
                    f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(task_names())}",
                )
            )
            raise typer.Exit(EXIT_CONFIG)
        # Output files are checked before the benchmark runs, not found unwritable after it.
        for option, path in (("--json", json_file), ("--write-baseline", write_baseline)):
            problem = _unwritable(path) if path else ""
            if problem:
                err.print(labelled("error:", f"{option} {str(path)!r}: {problem}"))
                raise typer.Exit(EXIT_CONFIG)
        try:
            baseline = load_baseline(check) if check else None
        except ValueError as exc:
            err.print(labelled("error:", exc))
            raise typer.Exit(EXIT_CONFIG) from None
        tasks = [t for t in all_tasks() if t.name in wanted]
        if plan_cache:
            _bench_plan_cache(console, err, tasks, 1 if quick else repeat, json_file)
            return
        cells = measure(
            tasks,
            repeat=1 if quick else repeat,
            max_concurrency=max_concurrency,
            on_cell=lambda c: err.print(f"  {c.task} {c.arch}: {c.wall_s:.2f} s", highlight=False),
        )
        print_table(console, cells)
        current = ratios(cells)
        if json_file:
            rows = [c.row() for c in cells]
            json_file.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        if write_baseline:
            document = baseline_document(current)
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            write_baseline.write_text(text, encoding="utf-8")
            console.print(plain(f"baseline written to {write_baseline}"))
        if baseline is not None:
            if task:  # only the tasks asked for; a full run must measure every baseline task
                baseline = {
                    **baseline,
                    "ratios": {k: v for k, v in baseline["ratios"].items() if k in wanted},
                }
            failures = gate_failures(current, baseline)
            for failure in failures:
                err.print(labelled("bench gate:", failure))
            if failures:
                raise typer.Exit(EXIT_GATE)
            console.print(plain(f"bench gate passed against {check}"))


def _bench_plan_cache(
    console: Any, err: Any, tasks: list[Any], repeat: int, json_file: Path | None
) -> None:
    """The `--plan-cache` section: a templated task's second run against its first."""
    from app.bench.plan_cache import measure_plan_cache, print_plan_cache_table

    rows = []
    for task in tasks:
        rows.append(row := measure_plan_cache(task, repeat=repeat))
        err.print(f"  {task.name}: {row.first.wall_s:.2f} s, then {row.second.wall_s:.2f} s")
    print_plan_cache_table(console, rows)
    if json_file:
        text = json.dumps([r.row() for r in rows], indent=2) + "\n"
        json_file.write_text(text, encoding="utf-8")


def _unwritable(path: Path) -> str:
    """Why a file cannot be written at `path`, or "" when it can (as far as can be told)."""
    if path.is_dir():
        return "is a folder; give a file name"
    if not path.parent.is_dir():
        return f"its folder {str(path.parent)!r} does not exist"
    return ""
