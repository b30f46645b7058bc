"""The fixed overhead of the end-of-run replanner call: prompt and schema tokens (o200k), with
the goal and the results left empty, for the lean end call (every step ran, nothing went wrong)
and for the full replanner call it replaced (still used after a surprise or a failure).

    python benchmarks/lean_end.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402

from app.scripted.tokens import count_messages, count_text  # noqa: E402
from graphs.executor import DEPENDENCY_CHARS  # noqa: E402
from graphs.schemas import EndDecision, ReplanDecision  # noqa: E402
from graphs.structured import _json_schema  # noqa: E402
from prompts import render  # noqa: E402


def overhead(system: str, task: str, schema: type) -> tuple[int, int, int]:
    messages = [SystemMessage(system), HumanMessage(task)]
    tool = convert_to_openai_tool(_json_schema(schema))
    schema_tokens = count_text(json.dumps([tool], sort_keys=True))
    return count_messages(messages), schema_tokens, count_messages(messages, [tool])


def measure() -> dict[str, tuple[int, int, int]]:
    """(prompt, schema, total) tokens of the full replanner call, of the lean end call (JSON
    plan format, with its decision schema, and plan lines, the default, with none), and of the
    planner's fixed prompt (plan lines, no tools listed, goal empty)."""
    full = overhead(
        render("replanner", max_steps=12, tools=""),
        render(
            "replanner_task",
            goal="",
            progress="",
            why="every step of the plan has run",
            review=1,
            replans=0,
            max_replans=5,
        ),
        ReplanDecision,
    )
    lean = overhead(
        render("replanner_end", dependency_chars=DEPENDENCY_CHARS),
        render("replanner_end_task", goal="", results="", review=1),
        EndDecision,
    )
    lean_lines = _no_schema(
        render("replanner_end_lines", dependency_chars=DEPENDENCY_CHARS),
        render("replanner_end_task", goal="", results="", review=1),
    )
    planner = _no_schema(render("planner", max_steps=12, tools=""), "")
    return {
        "full replanner (surprises)": full,
        "lean end (plan exhausted)": lean,
        "lean end, plan lines (default)": lean_lines,
        "planner, plan lines (default)": planner,
    }


def _no_schema(system: str, task: str) -> tuple[int, int, int]:
    # prompt: the system prompt's own tokens; total: the whole request, goal and results empty.
    return count_text(system), 0, count_messages([SystemMessage(system), HumanMessage(task)])


def main() -> None:
    rows = measure()
    print(f"{'call':<34}{'prompt':>8}{'schema':>8}{'total':>8}")
    for name, (prompt, schema, total) in rows.items():
        print(f"{name:<34}{prompt:>8}{schema:>8}{total:>8}")
    full, lean = rows["full replanner (surprises)"][2], rows["lean end (plan exhausted)"][2]
    print(f"lean end / full: {lean / full:.2f}")
    print("prompt: both messages for the first two rows, the system prompt alone for the others")


if __name__ == "__main__":
    main()
