"""The end-of-run replanner call is lean: goal and step results, a minimal schema; the full
replanner prompt (plan, statuses, tools) is kept for surprises and failures."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from tests.scripted_runs import Run, run_scenario, write_scenario

ROOT = Path(__file__).resolve().parents[2]
FINISH = {"action": "finish", "reason": "done", "response": "The answer."}


def run(tmp_path: Path, **parts: Any) -> Run:
    script = {"name": "unit_lean_end", "goal": "Test goal.", "tools": ["calculator"], **parts}
    return run_scenario(tmp_path, write_scenario(tmp_path, script))


def test_the_end_call_sees_results_not_the_plan(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        planner={"steps": [{"id": "s1", "description": "Find the secret number."}]},
        executor={"s1": [{"content": "42"}]},
        replanner=[FINISH],
    )
    (prompt,) = r.log.texts("replanner")
    assert r.state["status"] == "done"
    assert "Every step has run" in prompt and "[s1] 42" in prompt
    assert "Find the secret number" not in prompt  # no re-listing of the plan
    assert "Tools:" not in prompt


def test_a_surprise_gets_the_full_replanner_then_the_end_is_lean(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        planner={"steps": [{"id": "s1", "description": "Look."}]},
        executor={
            "s1": [
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "odd"}}]},
                {"content": "odd data"},
            ],
            "s2": [{"content": "fixed"}],
        },
        replanner=[
            {"action": "replan", "reason": "r", "steps": [{"id": "s2", "description": "Fix."}]},
            FINISH,
        ],
    )
    surprise, end = r.log.texts("replanner")
    assert "Plan and results so far" in surprise and "reported a surprise: odd" in surprise
    assert "Every step has run" in end and "[s2] fixed" in end


def test_the_end_calls_fixed_overhead_is_under_half_the_full_calls() -> None:
    measure = runpy.run_path(str(ROOT / "benchmarks" / "lean_end.py"))["measure"]
    full, lean = (total for _, _, total in measure().values())
    assert lean * 2 <= full
