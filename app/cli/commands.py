"""The `planexec` command line.

Exit codes (also in README.md):
  0 done · 1 failed or rejected · 2 bad command-line usage · 3 replan limit reached ·
  4 configuration or input error (nothing ran) · 5 paused for plan approval ·
  6 a run budget was reached (`planexec resume ID --max-cost ...` raises it) ·
  130 interrupted (Ctrl-C; `planexec resume ID` continues it) ·
  143 terminated (SIGTERM, handled like Ctrl-C; `planexec resume ID` continues it)
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.cli.bench_command import register as register_bench_command
from app.cli.cache_command import register as register_cache_command
from app.cli.serve_command import register as register_serve_command
from app.cli.steps_file import load_steps_file
from app.cli.text import json_text, labelled, plain
from app.runs.demo import DEMO_SCENARIO, DEMO_WORKSPACE

if TYPE_CHECKING:
    from app.context import Context
    from app.runs.persistence import Persistence

# Startup: `planexec --help` must not pay for LangGraph, LangChain and the tools (seconds), so
# heavy modules are imported where a command uses them, and `runner`, used everywhere, is a lazy
# module (stdlib importlib.util.LazyLoader): loaded on first attribute access.


def _lazy(name: str) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


runner = _lazy("app.runs.runner")

EXIT_DONE, EXIT_FAILED, EXIT_LIMIT, EXIT_CONFIG, EXIT_PAUSED, EXIT_INTERRUPTED = 0, 1, 3, 4, 5, 130
EXIT_BUDGET, EXIT_TERMINATED = 6, 143
# Signals that stop a run gracefully (no new step; steps in flight finish and are journaled),
# with the exit code each ends the process with: SIGTERM is what docker stop, systemd and
# Kubernetes send.
_STOP_SIGNALS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}
_received: list[int] = []  # the stop signals received, in order (the first decides the code)

app = typer.Typer(
    help="Plan-and-execute agent: a strong model plans, cheap models run the steps, "
    "every run is checkpointed and resumable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        # The backslash keeps rich (typer's help renderer) from reading [env: ...] as markup.
        help="memory://, a SQLite path, sqlite:///rel/path, sqlite:////abs/path or "
        "postgresql://… \\[env: PLANEXEC_DB]",
    ),
]
ThreadOption = Annotated[str | None, typer.Option("--thread", help="Thread id for this run.")]
# Run budgets (graphs/budget.py): on `run`, and on `resume` to raise them.
MaxTokensOption = Annotated[
    int | None,
    typer.Option("--max-tokens", min=0, help="Budget: tokens of all model calls (0: none)."),
]
MaxCostOption = Annotated[
    float | None,
    typer.Option("--max-cost", min=0.0, help="Budget in USD, priced by genai-prices (0: none)."),
]
MaxSecondsOption = Annotated[
    float | None,
    typer.Option("--max-seconds", min=0.0, help="Budget: wall-clock seconds (0: none)."),
]
MaxToolCallsOption = Annotated[
    int | None,
    typer.Option("--max-tool-calls", min=0, help="Budget: tool calls of all steps (0: none)."),
]
StepDeadlineOption = Annotated[
    float | None,
    typer.Option(
        "--step-deadline", min=0.0, help="Seconds a step may work before it fails (0: none)."
    ),
]


def _budgets(
    tokens: int | None,
    cost: float | None,
    seconds: float | None,
    calls: int | None,
    deadline: float | None,
) -> dict[str, Any]:
    """The budget options given, as Context fields."""
    given = {
        "max_total_tokens": tokens,
        "max_cost_usd": cost,
        "max_wall_seconds": seconds,
        "max_total_tool_calls": calls,
        "step_deadline_seconds": deadline,
    }
    return {k: v for k, v in given.items() if v is not None}


ReportOutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="The HTML file to write (default: ./<thread id>.html)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print events and the result as JSON lines, no live view.")
]
AsJsonOption = Annotated[bool, typer.Option("--json", help="Print it as JSON.")]


def _exit_code(state: dict[str, Any]) -> int:
    from graphs.state import BUDGET_EXCEEDED, DONE, REPLAN_LIMIT

    status = state.get("status")
    if status == DONE:
        return EXIT_DONE
    if status == REPLAN_LIMIT:
        return EXIT_LIMIT
    if status == runner.PAUSED:
        return EXIT_PAUSED
    if status == BUDGET_EXCEEDED:
        return EXIT_BUDGET
    return EXIT_FAILED


def _drive(
    persistence: Persistence, thread_id: str, as_json: bool, action: Any, ask: bool = False
) -> int:
    """Run `action(on_event)` with the live view or JSON lines; map the outcome to an exit code.

    With `ask`, a run that pauses for plan approval is answered at the terminal and continued.
    """
    import psycopg

    from app.models import ModelConfigError

    try:
        with _ctrl_c_finishes_steps_in_flight():
            state = _stream(persistence, thread_id, as_json, action)
        while state.get("status") == runner.PAUSED and ask and not as_json:
            try:
                answer = _ask_approval(state["approval_request"])
            except (typer.Abort, EOFError, KeyboardInterrupt):  # Ctrl-C or no input at the prompt
                err_console.print(
                    plain(
                        f"\nstill paused. Answer with: planexec approve {thread_id} "
                        "[--edit FILE | --reject REASON]"
                    )
                )
                return EXIT_PAUSED

            def answered(on_event: Any, answer: dict = answer) -> dict:
                return runner.answer_approval(persistence, thread_id, answer, on_event)

            with _ctrl_c_finishes_steps_in_flight():
                state = _stream(persistence, thread_id, as_json, answered)
    except (sqlite3.Error, psycopg.Error) as exc:
        err_console.print(
            labelled(
                "database error during the run:",
                f"{exc}\n{_go_on(persistence, thread_id)}",
            )
        )
        return EXIT_FAILED
    except (runner.RunNotFound, runner.RunPaused, ModelConfigError):
        raise  # nothing ran: reported by _guarded with exit code 4
    except Exception as exc:  # a bug or an unexpected error mid-run: say so, keep the run
        err_console.print(
            labelled(
                "the run stopped on an unexpected error:",
                f"{type(exc).__name__}: {exc}\n{_go_on(persistence, thread_id)}",
            )
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        word = "terminated" if _stop_code() == EXIT_TERMINATED else "interrupted"
        err_console.print(plain(f"{word}. {_go_on(persistence, thread_id)}"))
        sys.stdout.flush()
        # Nothing is left to wait for: the steps in flight finished and were journaled.
        os._exit(_stop_code())
    state["context"] = runner.run_record(persistence, thread_id).get("context", {})
    if as_json:
        keys = ("status", "reason", "response", "usage", "replans", "approval_request")
        summary = {k: state.get(k) for k in keys if k in state}
        print(json_text({"event": "result", "thread_id": thread_id, **summary}))
    elif state.get("status") == runner.PAUSED:
        _show_paused(thread_id, state["approval_request"])
    else:
        from app.cli.view import print_outcome

        print_outcome(console, state)
        if hint := _next_step(state, persistence, thread_id):
            console.print(plain(hint))
    return _exit_code(state)


def _next_step(state: dict[str, Any], persistence: Persistence, thread_id: str) -> str:
    """What the user can do after a run that ended without its answer, with its id."""
    from graphs.budget import BUDGET_OPTIONS
    from graphs.state import BUDGET_EXCEEDED, FAILED

    status, resume = state.get("status"), runner.resume_command(persistence, thread_id)
    if status not in (FAILED, BUDGET_EXCEEDED) or not resume:
        return ""
    if status == FAILED:
        if problem := runner.reopen_problem(persistence, thread_id):
            return problem
        return f"Fix what failed, then go on from there with: {resume}"
    option = BUDGET_OPTIONS.get((state.get("budget") or {}).get("budget"), "--max-cost")
    return f"Raise the budget and go on with: {resume} {option} N"


def _go_on(persistence: Persistence, thread_id: str) -> str:
    """How to continue a run that stopped: from its last checkpoint, unless nothing kept it."""
    if resume := runner.resume_command(persistence, thread_id):
        return f"The last checkpoint is kept; continue with: {resume}"
    return "The database was in memory: nothing was kept, the run cannot be resumed."


def _interactive() -> bool:
    """A person at a terminal can answer prompts (stdin may even be closed, as under CI)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _stop_code() -> int:
    """The exit code for the stop signal received first (Ctrl-C when none was: a plain
    KeyboardInterrupt)."""
    return _STOP_SIGNALS.get(_received[0], EXIT_INTERRUPTED) if _received else EXIT_INTERRUPTED


@contextmanager
def _ctrl_c_finishes_steps_in_flight() -> Iterator[None]:
    """The first Ctrl-C or SIGTERM starts no new step and stops the run once the steps in
    flight have finished (their work is paid for, and journaled); a second one quits at once
    (the step in flight then resumes from its journaled turns).

    The kernel may deliver SIGINT to any thread, and Python runs its handler only when the main
    thread next wakes, which can be after a slow step finished and a new one started. So a
    watcher thread reads the signal from the wakeup fd the C-level handler writes to at once,
    and stops new steps from there; the main thread's handler only ends the run.
    """
    from graphs.scheduler import STOP_LAUNCHING

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while data := os.read(read_end, 64):  # b"" once write_end is closed
            for signum in data:
                if signum not in _STOP_SIGNALS:
                    continue
                _received.append(signum)
                if STOP_LAUNCHING.is_set():
                    err_console.print(
                        "\nquitting now; the steps in flight resume from their journaled turns"
                    )
                    os._exit(_stop_code())
                STOP_LAUNCHING.set()
                err_console.print(
                    "\nstopping once the steps in flight finish (Ctrl-C again: quit now)"
                )

    def on_sigint(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    STOP_LAUNCHING.clear()
    _received.clear()
    watcher = threading.Thread(target=watch, name="planexec-ctrl-c", daemon=True)
    watcher.start()
    previous = {signum: signal.signal(signum, on_sigint) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        # STOP_LAUNCHING stays set after a Ctrl-C: a step still in flight must not start
        # another while the process winds down. The next run clears it when it starts.
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_end)
        watcher.join(timeout=5)
        os.close(read_end)


def _stream(persistence: Persistence, thread_id: str, as_json: bool, action: Any) -> dict:
    if as_json:
        return action(lambda e: print(json_text(e), flush=True))
    from app.cli.view import make_view, run_header

    plan, results = _current_plan(persistence, thread_id)
    console.print(run_header(thread_id, db=persistence.shown))
    with make_view(console, plan, results) as view:  # a live table, or lines when piped
        return action(view.handle)


def _show_approval_request(request: dict[str, Any]) -> None:
    table = Table(title="plan waiting for approval")
    for column in ("step", "description", "after"):
        table.add_column(column)
    for step in request.get("steps", []):
        table.add_row(
            plain(step["id"]),
            plain(step["description"]),
            plain(", ".join(step.get("depends_on", []))),
        )
    console.print(table)
    if request.get("completed"):
        console.print(plain(f"completed steps (kept): {', '.join(request['completed'])}"))
    if request.get("revision"):
        console.print(plain(f"plan revision {request['revision']}"))
    if request.get("error"):
        console.print(plain(request["error"], style="red"))
    if request.get("budget"):
        console.print(plain(request["budget"], style="yellow"))


def _show_paused(thread_id: str, request: dict[str, Any]) -> None:
    """The plan waiting for approval, and the command that answers it (this revision only)."""
    _show_approval_request(request)
    revision = request.get("revision")
    console.print(
        plain(
            f"paused for approval. Answer with: planexec approve {thread_id} "
            f"{f'--revision {revision} ' if revision else ''}[--edit FILE | --reject REASON]"
        )
    )


def _ask_approval(request: dict[str, Any]) -> dict[str, Any]:
    """Ask at the terminal until the answer is well-formed (the graph validates edits)."""
    _show_approval_request(request)
    # The answer names the plan it was given for: the graph refuses it for any other.
    revision = {"revision": request["revision"]} if "revision" in request else {}
    while True:
        choice = typer.prompt("approve, edit or reject?", default="approve").strip().lower()
        if choice in ("a", "approve"):
            return {"action": "approve", **revision}
        if choice in ("r", "reject"):
            return {"action": "reject", "reason": typer.prompt("reason"), **revision}
        if choice in ("e", "edit"):
            path = typer.prompt("file with the new steps (JSON or YAML)")
            try:
                return {"action": "edit", "steps": load_steps_file(Path(path)), **revision}
            except ValueError as exc:
                err_console.print(plain(exc, style="red"))
                continue
        err_console.print("answer approve, edit or reject")


def _current_plan(persistence: Persistence, thread_id: str) -> tuple[list, dict]:
    try:
        state = runner.run_state(persistence, thread_id)
    except runner.RunNotFound:
        return [], {}
    return state.get("plan", []), state.get("results", {})


def _guarded(fn: Any) -> int:
    """Turn the errors a user can cause into a message and exit code 4, never a traceback."""
    from app.models import ModelConfigError
    from app.runs.persistence import DatabaseURLError
    from app.runs.worker import RunBusy
    from app.scripted.scenarios import ScenarioError

    try:
        return fn()
    except (
        ModelConfigError,
        DatabaseURLError,
        runner.RunNotFound,
        runner.RunPaused,
        RunBusy,
        ScenarioError,
        ValueError,
    ) as exc:
        err_console.print(labelled("error:", exc), soft_wrap=True)  # one line, however long
        return EXIT_CONFIG
    except Exception as exc:
        if not _database_error(exc):
            raise
        # Before a run starts (recording it, listing runs, pruning): a corrupt, read-only or
        # locked database file, or a server that refused.
        why = f"{type(exc).__name__}: {exc}"
        err_console.print(
            labelled(
                "database error:",
                f"{why}. Check the database (corrupt, read-only, or locked by another process), "
                "or use --db for another one.",
            ),
            soft_wrap=True,
        )
        return EXIT_CONFIG


def _database_error(exc: BaseException) -> bool:
    """An error of SQLite or PostgreSQL (psycopg is not imported to tell: it is slow to load)."""
    return isinstance(exc, sqlite3.Error) or any(
        cls.__module__.split(".")[0] == "psycopg" for cls in type(exc).__mro__
    )


@app.command()
def run(
    goal: Annotated[
        str | None,
        typer.Argument(help="What the agent should achieve (left out with --templates)."),
    ] = None,
    thread: ThreadOption = None,
    db: DbOption = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="Play this scenario (bundled name or file) with every role, offline."),
    ] = None,
    planner_model: Annotated[str | None, typer.Option(help="e.g. openai:gpt-4o")] = None,
    executor_model: Annotated[str | None, typer.Option(help="e.g. openai:gpt-4o-mini")] = None,
    replanner_model: Annotated[str | None, typer.Option(help="e.g. openai:gpt-4o")] = None,
    tools: Annotated[str | None, typer.Option(help="Comma-separated tool names.")] = None,
    workspace: Annotated[str | None, typer.Option(help="Folder the file tools use.")] = None,
    sql_database: Annotated[str | None, typer.Option(help="SQLite file for sql_query.")] = None,
    max_replans: Annotated[int | None, typer.Option(min=0)] = None,
    max_concurrency: Annotated[int | None, typer.Option(min=1)] = None,
    replan_every: Annotated[int | None, typer.Option(min=0)] = None,
    plan_format: Annotated[
        str | None, typer.Option(help="'lines' (compact, the default) or 'json'.")
    ] = None,
    planner_tools: Annotated[
        str | None,
        typer.Option(help="Comma-separated read-only tools the planner may call first."),
    ] = None,
    max_planner_tool_calls: Annotated[int | None, typer.Option(min=0)] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Approve, edit or reject the plan before it runs.")
    ] = False,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue", help="Record the run, queue it for `planexec worker`, print its id."
        ),
    ] = False,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    max_seconds: MaxSecondsOption = None,
    max_tool_calls: MaxToolCallsOption = None,
    step_deadline: StepDeadlineOption = None,
    tool_timeout: Annotated[
        float | None,
        typer.Option(
            "--tool-timeout",
            help="Seconds one tool call may take before it fails (default 300; above 0).",
        ),
    ] = None,
    unknown_outcome: Annotated[
        str | None,
        typer.Option(
            help="A tool call cut off by a crash: 'repeat' it with its idempotency key, or "
            "'surprise' (do not repeat; the replanner is told its outcome is unknown)."
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="The goal is this template's: reuse its cached plan (no planner call)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="A template parameter, KEY=VALUE (repeatable).")
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option(
            help="YAML/JSON file declaring templates: the goal is made from --template's."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Plan and execute GOAL, showing the plan and each step live."""
    overrides: dict[str, Any] = {
        "planner_model": planner_model,
        "executor_model": executor_model,
        "replanner_model": replanner_model,
        "workspace": workspace,
        "sql_database": sql_database,
        "max_replans": max_replans,
        "max_concurrency": max_concurrency,
        "replan_every": replan_every,
        "approve_plan": approve or None,
        "tools": _names(tools),
        "unknown_outcome": unknown_outcome,
        "plan_format": plan_format,
        "planner_tools": _names(planner_tools),
        "max_planner_tool_calls": max_planner_tool_calls,
        "tool_timeout_s": tool_timeout,
        **_budgets(max_tokens, max_cost, max_seconds, max_tool_calls, step_deadline),
    }
    if unknown_outcome not in (None, "repeat", "surprise"):
        err_console.print(
            labelled("error:", f"--unknown-outcome {unknown_outcome!r}: use 'repeat' or 'surprise'")
        )
        raise typer.Exit(EXIT_CONFIG)

    def go() -> int:
        from app.cli.cache_command import templated_goal
        from app.context import Context
        from app.runs.demo import prepare_workspace
        from app.scripted.scenarios import load_scenario

        if scenario:
            spec = f"scripted:{scenario}"
            for role in ("planner_model", "executor_model", "replanner_model"):
                overrides[role] = overrides[role] or spec
            overrides["tools"] = overrides["tools"] or list(load_scenario(scenario).tools) or None
            if scenario == DEMO_SCENARIO and not sql_database:
                # The demo's script queries the demo database: give it one, as `demo` does.
                from app.cli.checks import check_workspace

                demo_ws = Path(workspace or DEMO_WORKSPACE).resolve()
                check_workspace(demo_ws, thread)
                overrides["workspace"] = str(demo_ws)
                overrides["sql_database"] = str(prepare_workspace(demo_ws))
        run_goal, cache_fields = templated_goal(goal, template, param or [], templates)
        overrides.update(cache_fields)
        ctx = Context.of(**{k: v for k, v in overrides.items() if v is not None})
        return _start(run_goal, ctx, thread, db, as_json, queue)

    raise typer.Exit(_guarded(go))


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as names; None when not given."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@app.command()
def demo(
    thread: ThreadOption = None,
    db: DbOption = None,
    workspace: Annotated[
        Path,
        typer.Option(
            help="Where the report goes. The shop database is made next to it, not in it "
            "(WORKSPACE-shop.sqlite), so the file tools cannot overwrite it."
        ),
    ] = Path(DEMO_WORKSPACE),
    max_concurrency: Annotated[int | None, typer.Option(min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """Play the bundled scenario offline: a revenue report over a small shop database."""

    def go() -> int:
        from app.cli.checks import check_workspace
        from app.runs.demo import demo_context
        from app.scripted.scenarios import load_scenario

        extra = {"max_concurrency": max_concurrency} if max_concurrency else {}
        check_workspace(workspace, thread)
        ctx = demo_context(workspace.resolve(), **extra)
        return _start(load_scenario(DEMO_SCENARIO).goal, ctx, thread, db, as_json)

    raise typer.Exit(_guarded(go))


def _start(
    goal: str,
    ctx: Context,
    thread: str | None,
    db: str | None,
    as_json: bool,
    queue: bool = False,
) -> int:
    """Start a new run (or only record it, for a worker); with Context.approve_plan and a
    terminal, ask for approval there."""
    from app.cli.checks import check_input
    from app.runs.persistence import open_persistence
    from app.runs.worker import holding_run

    thread_id = thread or runner.new_thread_id()
    ctx = _absolute_paths(ctx)
    check_input(goal, ctx, thread_id)  # exit 4 before the database or a model is touched
    runner.check_models(ctx)
    with open_persistence(db) as persistence:
        if queue:
            from app.runs.worker import enqueue

            runner.submit_run(persistence, goal, ctx, thread_id)
            enqueue(persistence, thread_id)
            print(thread_id)
            return EXIT_DONE
        runner.ensure_new_thread(persistence, thread_id)  # before the live view starts
        with holding_run(persistence, thread_id):  # from before the run is recorded
            try:
                # Recorded before anything runs: a kill from here on leaves a run `resume`
                # finishes.
                runner.submit_run(persistence, goal, ctx, thread_id)
                return _drive(
                    persistence,
                    thread_id,
                    as_json,
                    lambda on_event: runner.resume_run(persistence, thread_id, on_event),
                    ask=ctx.approve_plan and _interactive(),
                )
            except KeyboardInterrupt:  # before _drive took over Ctrl-C: nothing has run yet
                return _interrupted_before_start(persistence, thread_id)


def _interrupted_before_start(persistence: Persistence, thread_id: str) -> int:
    """Ctrl-C while the run was being recorded: say whether it was, and how to go on."""
    try:
        runner.run_record(persistence, thread_id)
    except runner.RunNotFound:
        err_console.print(plain("\ninterrupted before the run was recorded: nothing ran"))
    else:
        again = "(an in-memory run: start it again)"
        go_on = runner.resume_command(persistence, thread_id) or again
        err_console.print(plain(f"\ninterrupted before the run started. Start it with: {go_on}"))
    return EXIT_INTERRUPTED


def _absolute_paths(ctx: Context) -> Context:
    """`ctx` with its workspace, SQL database and scenario files as absolute paths from here: a
    worker, or `resume` in another directory, must use the same files."""
    from app.scripted.scenarios import scenario_path

    changes = {"workspace": str(Path(ctx.workspace).expanduser().resolve())}
    if ctx.sql_database:
        changes["sql_database"] = str(Path(ctx.sql_database).expanduser().resolve())
    for role in ("planner_model", "executor_model", "replanner_model"):
        name = getattr(ctx, role).removeprefix("scripted:")
        path = Path(name).expanduser()
        if name != getattr(ctx, role) and (
            path.suffix in (".json", ".yaml", ".yml") or path.exists()
        ):
            changes[role] = f"scripted:{scenario_path(name)}"
    from app.context import replaced

    return replaced(ctx, **changes)


@app.command()
def resume(
    thread_id: Annotated[str, typer.Argument(help="The run's thread id.")],
    db: DbOption = None,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    max_seconds: MaxSecondsOption = None,
    max_tool_calls: MaxToolCallsOption = None,
    step_deadline: StepDeadlineOption = None,
    as_json: JsonOption = False,
    queue: Annotated[
        bool,
        typer.Option("--queue", help="Queue the run for `planexec worker` instead of here."),
    ] = False,
) -> None:
    """Continue an interrupted run; steps that finished are not run again, a step cut off
    mid-way replays its journaled turns. Budget options raise the run's budgets."""
    budgets = _budgets(max_tokens, max_cost, max_seconds, max_tool_calls, step_deadline)

    def go() -> int:
        if queue:
            return _queue_existing(db, thread_id)
        from app.cli.checks import limit_problems
        from app.context import replaced, restore_context
        from app.runs.worker import holding_run

        with (
            _existing_database(db, thread_id, writing=True) as persistence,
            holding_run(persistence, thread_id),
        ):
            ctx = restore_context(runner.run_record(persistence, thread_id)["context"])
            raised = replaced(ctx, **budgets)
            # Before a raised budget is recorded: past a ceiling it would fail every resume.
            if problems := limit_problems(raised):
                raise ValueError("; ".join(problems))
            runner.check_models(raised)
            if problem := runner.reopen_problem(persistence, thread_id):
                raise ValueError(problem)
            status = runner.run_state(persistence, thread_id)["status"]
            if status == runner.PAUSED:
                raise runner.RunPaused(
                    f"run {thread_id!r} is paused for plan approval; answer with `planexec "
                    f"approve {thread_id}` (or --edit FILE / --reject REASON)"
                )
            if status in _OVER:  # said, so the outcome shown is not taken for a new one
                err_console.print(
                    plain(f"run {thread_id} ended {status} already: nothing to resume"),
                    soft_wrap=True,
                )
            return _drive(
                persistence,
                thread_id,
                as_json,
                lambda on_event: runner.resume_run(
                    persistence, thread_id, on_event, budgets, reopen_failed=True
                ),
            )

    raise typer.Exit(_guarded(go))


# Final statuses `resume` has nothing to do for (a failed run is tried again, a budget raised).
_OVER = ("done", "rejected", "replan_limit")


def _queue_existing(db: str | None, thread_id: str) -> int:
    """`resume --queue`: hand an interrupted (e.g. killed) run to the workers."""
    from app.runs.worker import enqueue

    with _existing_database(db, thread_id, writing=True) as persistence:
        status = runner.run_state(persistence, thread_id)["status"]
        if status in runner.FINAL or status == runner.PAUSED:
            hint = {
                "paused": f"; answer it with `planexec approve {thread_id}`",
                "failed": f"; `{runner.resume_command(persistence, thread_id)}` (no --queue) tries "
                "it again here",
            }.get(status, "")
            raise ValueError(
                f"run {thread_id!r} is {status}: there is nothing for a worker to do{hint}"
            )
        queued = enqueue(persistence, thread_id)
    print(thread_id if queued else f"{thread_id} (queued already)")
    return EXIT_DONE


@app.command("approve")
def approve_cmd(
    thread_id: Annotated[str, typer.Argument(help="The paused run's thread id.")],
    edit: Annotated[
        Path | None, typer.Option(help="JSON/YAML file of steps replacing the remaining ones.")
    ] = None,
    reject: Annotated[str | None, typer.Option(help="Reject the plan, with this reason.")] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            help="Answer only this plan revision (shown with the plan): if the plan waiting "
            "now is another one, nothing is answered and the run stays paused."
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a run paused for plan approval (approve by default), then continue it."""

    def go() -> int:
        if edit is not None and reject is not None:
            raise ValueError("give --edit or --reject, not both")
        answer: dict[str, Any] = {"action": "approve"}
        if reject is not None:
            answer = {"action": "reject", "reason": reject}
        elif edit:
            answer = {"action": "edit", "steps": load_steps_file(edit)}
        if revision is not None:
            answer["revision"] = revision
        from app.runs.worker import holding_run

        with (
            _existing_database(db, thread_id, writing=True) as persistence,
            holding_run(persistence, thread_id),
        ):
            status = runner.run_state(persistence, thread_id)["status"]
            if status != runner.PAUSED:
                raise ValueError(f"run {thread_id!r} is not waiting for approval ({status})")
            return _drive(
                persistence,
                thread_id,
                as_json,
                lambda on_event: runner.answer_approval(persistence, thread_id, answer, on_event),
            )

    raise typer.Exit(_guarded(go))


@app.command()
def worker(
    db: DbOption = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds with nothing to do.")
    ] = None,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Exit after this many runs.")] = None,
    grace: Annotated[
        float,
        typer.Option(min=0, help="On SIGTERM/SIGINT, seconds the steps in flight get to finish."),
    ] = 30.0,
    stalled_after: Annotated[
        float,
        typer.Option(
            min=1,
            help="PostgreSQL: a worker silent this many seconds is dead; its runs are retried.",
        ),
    ] = 4.0,
    heartbeat: Annotated[
        float | None,
        typer.Option(help="PostgreSQL: seconds between heartbeats (default: stalled-after / 4)"),
    ] = None,
    stalled_check: Annotated[
        float, typer.Option(help="PostgreSQL: look for dead workers' runs every this many seconds.")
    ] = 0.5,
    concurrency: Annotated[
        int,
        typer.Option(min=1, help="PostgreSQL: runs at once (plus one standby slot for takeovers)."),
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Take queued runs (`run --queue`, `resume --queue`) and finish them; run several of these
    against one database to share the work. SIGTERM: finish the steps in flight, hand the run
    back to the queue, exit 0 (75 if --grace ran out). docs/workers.md."""
    from app.runs.persistence import open_persistence
    from app.runs.worker import Liveness, work

    def go() -> int:
        liveness = Liveness(stalled_after, heartbeat, stalled_check)  # checked first
        if idle_exit is not None and not (math.isfinite(idle_exit) and idle_exit >= 0):
            raise ValueError(f"--idle-exit is {idle_exit}; give 0 or more seconds")
        if not math.isfinite(grace):
            raise ValueError(f"--grace is {grace}; give a number of seconds")

        def on_event(thread_id: str, event: dict[str, Any]) -> None:
            if as_json:
                print(json_text({"thread_id": thread_id, **event}), flush=True)
            elif event.get("event") in ("plan", "finished"):
                console.print(plain(f"{thread_id}: {event['event']} {event.get('status', '')}"))
            elif event.get("event") == "run_error":
                err_console.print(labelled(f"{thread_id}: cannot run it:", event["error"]))

        with open_persistence(db) as persistence:
            if not as_json:
                console.print(plain(f"worker {os.getpid()} on {persistence.shown}"))
            done, code = work(
                persistence, on_event=on_event, idle_exit=idle_exit, max_runs=max_runs,
                grace=grace, liveness=liveness, concurrency=concurrency,
            )  # fmt: skip
        summary = {"event": "worker_done", "pid": os.getpid(), "runs": done}
        print(json.dumps(summary) if as_json else f"worker finished {len(done)} run(s)")
        return code

    raise typer.Exit(_guarded(go))


@app.command("runs")
def list_runs(
    db: DbOption = None,
    as_json: AsJsonOption = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many (newest first).")] = 100,
    show_all: Annotated[bool, typer.Option("--all", help="Show every matching run.")] = False,
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="Only runs with this status (repeat for several): done, failed, "
            "replan_limit, rejected, budget_exceeded, queued, running, interrupted, paused."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs created since: 2h, 7d, or a date 2026-11-20.")
    ] = None,
) -> None:
    """List the runs in the database, newest first, and how many match in all."""
    from app.cli.view import runs_table
    from app.runs.listing import check_statuses, find_runs, parse_since
    from app.runs.persistence import NoDatabase, open_persistence

    def go() -> int:
        statuses = check_statuses(status or [])
        since_at = parse_since(since) if since else None
        try:
            with open_persistence(db, create=False) as persistence:
                runs, total = find_runs(
                    persistence, limit=None if show_all else limit, statuses=statuses,
                    since=since_at,
                )  # fmt: skip
        except NoDatabase as exc:  # nothing to list is not an error; and nothing is created
            if as_json:
                print(json.dumps({"total": 0, "shown": 0, "runs": []}))
            else:
                console.print(plain(exc))
            return EXIT_DONE
        if as_json:
            page = {"total": total, "shown": len(runs), "runs": [_run_summary(r) for r in runs]}
            print(json_text(page, indent=2))
            return 0
        table = runs_table([_run_summary(r) for r in runs])
        table.title = f"runs: {len(runs)} shown of {total}"
        console.print(table)
        if len(runs) < total:
            console.print(f"{total - len(runs)} more: --limit N or --all shows them")
        return 0

    raise typer.Exit(_guarded(go))


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option(help="Finished at least this long ago: 30m, 12h, 7d, 2w.")
    ],
    status: Annotated[
        list[str] | None,
        typer.Option(help="Only finished runs with this status (repeat): done, failed, ..."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Say what would go; remove nothing.")] = False,
    db: DbOption = None,
    as_json: AsJsonOption = False,
) -> None:
    """Remove finished runs' checkpoints, journal, records and write records; never a run in
    progress, interrupted or paused. Safe while workers run (a run held by a process is
    skipped)."""
    from app.runs.listing import check_statuses, parse_duration
    from app.runs.persistence import NoDatabase, open_persistence
    from app.runs.storage import prune as prune_runs

    def go() -> int:
        statuses = check_statuses(status or [])
        finished = set(runner.FINAL)
        if set(statuses) - finished:
            raise ValueError(f"prune removes finished runs only: --status {', '.join(finished)}")
        age = parse_duration(older_than)
        try:  # a database that is not there has nothing to prune: none is made (a typo'd path)
            with open_persistence(db, create=False) as persistence:
                report = prune_runs(persistence, age, statuses, dry_run)
        except NoDatabase as exc:  # as `runs` says it: not an error
            if as_json:
                print(json.dumps({"removed": 0, "reason": str(exc)}))
            else:
                console.print(plain(exc), soft_wrap=True)  # the path as given, escaped
            return EXIT_DONE
        summary = {
            "removed" if not dry_run else "would_remove": len(report.runs),
            "checkpoint_bytes": report.checkpoint_bytes,
            "journal_entries": report.journal_entries,
            "write_records": report.write_records,
            "skipped_busy": report.skipped_busy,
            "runs": report.runs,
        }
        if as_json:
            print(json.dumps(summary, indent=2))
        else:
            verb = "would remove" if dry_run else "removed"
            console.print(
                f"{verb} {len(report.runs)} run(s): {report.checkpoint_bytes:,} bytes of "
                f"checkpoints, {report.journal_entries} journal entries, "
                f"{report.write_records} write records"
                + (f"; {len(report.skipped_busy)} skipped (in use)" if report.skipped_busy else "")
            )
        return 0

    raise typer.Exit(_guarded(go))


def _run_summary(state: dict[str, Any]) -> dict[str, Any]:
    from graphs.state import DONE

    results = state.get("results", {})
    plan = state.get("plan", [])
    done = sum(results.get(s["id"], {}).get("status") == DONE for s in plan)
    return {
        "thread_id": state["thread_id"],
        "status": state.get("status"),
        "steps": f"{done}/{len(plan)}",
        "replans": state.get("replans", 0),
        "goal": state.get("goal", ""),
    }


@app.command()
def show(
    thread_id: Annotated[str, typer.Argument(help="The run's thread id.")],
    db: DbOption = None,
    as_json: AsJsonOption = False,
    html: Annotated[
        bool, typer.Option("--html", help="Write the run's HTML report instead (see `report`).")
    ] = False,
    output: ReportOutputOption = None,
) -> None:
    """A run's goal, status, plan with each step's result and attempts, and usage per role."""
    from app.cli.view import print_outcome, run_header, steps_table

    def go() -> int:
        if html or output:
            return _report(db, thread_id, output)
        state = _stored_state(db, thread_id)
        if as_json:
            from app.usage import with_cache_hit_rates

            state["usage"] = with_cache_hit_rates(state.get("usage"))
            print(json_text(state, indent=2))
            return 0
        console.print(run_header(thread_id, goal=state.get("goal", "")))
        console.print(steps_table(state))
        if state.get("status") == runner.PAUSED:  # what to answer, and its revision
            _show_paused(thread_id, state["approval_request"])
            return 0
        print_outcome(console, state)
        return 0

    raise typer.Exit(_guarded(go))


@app.command()
def report(
    thread_id: Annotated[str, typer.Argument(help="The run's thread id.")],
    db: DbOption = None,
    output: ReportOutputOption = None,
) -> None:
    """Write a run's report as one self-contained HTML file: the plan as a graph, a timeline of
    every step and model call, each replan with its reason, tokens and cost."""
    raise typer.Exit(_guarded(lambda: _report(db, thread_id, output)))


def _report(db: str | None, thread_id: str, output: Path | None) -> int:
    from app.cli.report import write_report  # only this command needs it

    with _existing_database(db, thread_id) as persistence:
        path = write_report(persistence, thread_id, output)
    console.print(plain(f"wrote {path}"))
    return EXIT_DONE


@contextmanager
def _existing_database(
    db: str | None, thread_id: str, *, writing: bool = False
) -> Iterator[Persistence]:
    """The database holding run `thread_id`, never created here (a missing one: exit 4).
    `writing`: the command goes on with the run, so a database it cannot write is refused
    now (exit 4), not at the run's first checkpoint."""
    from app.runs.persistence import NoDatabase, open_persistence, write_problem

    try:
        with open_persistence(db, create=False) as persistence:
            if writing and (problem := write_problem(persistence)):
                raise ValueError(problem)
            yield persistence
    except NoDatabase as exc:
        raise runner.RunNotFound(f"no run with thread id {thread_id!r}: {exc}") from exc


def _stored_state(db: str | None, thread_id: str) -> dict[str, Any]:
    from app.runs.listing import current_state

    with _existing_database(db, thread_id) as persistence:
        return current_state(persistence, thread_id)


@app.command("scenario-schema")
def scenario_schema() -> None:
    """Print the JSON Schema of scenario files."""
    from app.scripted.scenarios import Scenario

    print(json.dumps(Scenario.model_json_schema(), indent=2))


register_serve_command(app)  # planexec serve-scenario: app/serve_command.py
register_bench_command(app)  # planexec bench: app/cli/bench_command.py
register_cache_command(app)  # planexec cache list|show|clear: app/cli/cache_command.py


def main() -> None:
    app()


if __name__ == "__main__":
    main()
