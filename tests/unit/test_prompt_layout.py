"""Prompts laid out for providers' prompt caches: what repeats within a run comes first, in the
same bytes, so the scripted prompt cache (OpenAI's rule: a prefix of 1,024+ tokens sent before
in the run) serves it, and what changes from call to call comes last."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.scripted.tokens import count_text
from tests.scripted_runs import Run, run_scenario, write_scenario

FINISH = {"action": "finish", "reason": "done", "response": "The answer."}


def long_result(name: str) -> str:
    """A step result of ~1,300 tokens that fits the executor's 4,000-character cut."""
    text = ", ".join(f"{name}{i}={i * 7919 % 100000}" for i in range(300))[:3900]
    assert count_text(text) > 1200
    return text


def run(tmp_path: Path, **parts: Any) -> Run:
    script = {"name": "unit_prompt_layout", "goal": "Test goal.", "tools": [], **parts}
    scenario = write_scenario(tmp_path, script)
    return run_scenario(tmp_path, scenario, thread_id=f"layout-{tmp_path.name}")


def test_sibling_steps_share_their_dependency_so_the_second_reads_it_from_the_cache(
    tmp_path: Path,
) -> None:
    r = run(
        tmp_path,
        planner={
            "steps": [
                {"id": "s1", "description": "Fetch the table.", "tools": []},
                {"id": "s2", "description": "Sum column a.", "depends_on": ["s1"], "tools": []},
                {"id": "s3", "description": "Sum column b.", "depends_on": ["s1"], "tools": []},
            ]
        },
        executor={
            "s1": [{"content": long_result("row")}],
            "s2": [{"content": "a: 10"}],
            "s3": [{"content": "b: 20"}],
        },
        replanner=[FINISH],
    )
    assert r.state["status"] == "done"
    s2, s3 = r.log.task("s2"), r.log.task("s3")
    # The step itself comes last: the two prompts differ only from there on.
    common = s2[: s2.index("Your step (s2")]
    assert s3.startswith(common) and "result of step s1" in common
    # One executor call per step, so every cached token is one sibling reading the other's
    # prefix (flag_surprise's schema, the instructions, the goal, s1's result).
    executor = r.state["usage"]["executor"]
    assert executor["calls"] == 3
    assert executor["cached_input_tokens"] >= 1024


def test_a_later_review_starts_with_the_earlier_ones_settled_results(tmp_path: Path) -> None:
    # The plan lists "use" before "fetch", which it depends on: in plan order a review's text
    # would change at its first step; in the order steps finished it only grows.
    surprise = {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "odd"}}]}
    r = run(
        tmp_path,
        planner={
            "steps": [
                {"id": "use", "description": "Use it.", "depends_on": ["fetch"], "tools": []},
                {"id": "fetch", "description": "Fetch it.", "tools": []},
            ]
        },
        executor={
            "fetch": [surprise, {"content": long_result("v")}],
            "use": [surprise, {"content": "used"}],
        },
        replanner=[{"action": "continue", "reason": "go on"}, FINISH],
    )
    assert r.state["status"] == "done"
    first, second = r.log.texts("replanner")  # both full reviews: each follows a surprise
    settled = first[: first.index("[use] Use it.")]  # fetch's result; "use" has not run yet
    assert "result of step fetch" in settled
    assert second.startswith(settled)
    assert second.index("[fetch]") < second.index("[use]")
    assert r.state["usage"]["replanner"]["cached_input_tokens"] >= 1024
