"""Checks on a new run's input made before anything is paid for.

The graph checks the same things (a run started over the server has no CLI in front of it),
but there a bad goal or tool list costs a recorded, failed run; here it is one line and exit 4
before the database, the models or the planner are touched.
"""

from __future__ import annotations

from pathlib import Path

from app.context import Context
from prompts.untrusted import goal_problem
from tools.registry import tool_names


def input_problems(goal: str, ctx: Context) -> list[str]:
    """What to change before this run can start (empty when it can)."""
    problems = []
    if not goal.strip():
        problems.append("the goal is empty: say what the agent should achieve")
    elif problem := goal_problem(goal):
        problems.append(problem)
    try:  # the planner's own check (MCP servers and import paths too), before it is paid for
        tool_names(ctx.tools)
    except ValueError as exc:
        problems.append(f"--tools / PLANEXEC_TOOLS cannot be used: {exc}")
    from graphs.planner_lookups import planner_tools_problem  # the planner's own check

    if problem := planner_tools_problem(ctx):
        problems.append(f"--planner-tools / --max-planner-tool-calls cannot be used: {problem}")
    problems += workspace_problems(Path(ctx.workspace))
    problems += limit_problems(ctx)
    if ctx.sql_database:
        sql = Path(ctx.sql_database).expanduser()
        if not sql.is_file():
            problems.append(
                f"the SQL database {str(sql)!r} is not a file; give --sql-database an SQLite file"
            )
        elif not _looks_like_sqlite(sql):
            problems.append(
                f"the SQL database {str(sql)!r} is not an SQLite file (its first bytes are not "
                "SQLite's header); give --sql-database an SQLite file"
            )
    return problems


def _looks_like_sqlite(path: Path) -> bool:
    """An SQLite database file: its header, or empty (SQLite reads an empty file as an empty
    database). Unreadable files pass: the tool then says why it cannot open them."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError:
        return True
    return head in (b"", b"SQLite format 3\x00")


def limit_problems(ctx: Context) -> list[str]:
    """The server limits of this machine's environment (app/limits.py), which the planner would
    apply: refused here, before the run is recorded, the run is not left failed with a resume
    that cannot work (resume has no option for most of these settings)."""
    from app.limits import LimitsMisconfigured, context_problems

    try:
        return context_problems(ctx)
    except LimitsMisconfigured as exc:
        return [f"this machine's limits cannot be read, so no run may start: {exc}"]


def workspace_problems(workspace: Path) -> list[str]:
    workspace = workspace.expanduser()
    if workspace.exists() and not workspace.is_dir():
        return [f"the workspace {str(workspace)!r} is a file; give --workspace a folder"]
    for parent in workspace.parents:  # the nearest one that exists must be a folder
        if parent.exists():
            if not parent.is_dir():
                return [
                    f"the workspace {str(workspace)!r} cannot be made: {str(parent)!r} is a "
                    "file; give --workspace a folder"
                ]
            break
    return []


def check_workspace(workspace: Path, thread_id: str | None = None) -> None:
    """ValueError if `workspace` cannot be a folder, or `thread_id` (when given) cannot be a
    thread: checked before the demo creates its workspace and database."""
    problems = workspace_problems(workspace) + (thread_problems(thread_id) if thread_id else [])
    if problems:
        raise ValueError(problems[0])


def thread_problems(thread_id: str) -> list[str]:
    # The step journal keys the store by thread id, and store namespaces refuse periods.
    if not thread_id.strip():
        return ["the thread id is empty; give --thread a name, or leave it out"]
    if "." in thread_id:
        return [f"the thread id {thread_id!r} contains '.'; give --thread a name without one"]
    if not thread_id.isprintable():  # tabs, newlines, escapes: it is typed back and printed
        return [f"the thread id {thread_id!r} holds control characters; give --thread a name"]
    if thread_id.startswith("-"):  # `planexec resume -x` would read it as an option
        return [f"the thread id {thread_id!r} starts with '-'; give --thread a name"]
    return []


def check_input(goal: str, ctx: Context, thread_id: str = "run") -> None:
    """ValueError naming every problem (the CLI prints it and exits 4)."""
    problems = thread_problems(thread_id) + input_problems(goal, ctx)
    if problems:
        raise ValueError("; ".join(problems))
