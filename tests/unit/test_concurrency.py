"""Parallel steps: the executor node starts each step as soon as its dependencies are done.

The checks read the order of `step_started`/`step_finished` events and the results' own
`started_at`/`finished_at`, never wall-clock thresholds, so a slow machine cannot fail them.
Scenario: tests/scenarios/unit_fanout.json (fast, medium and slow independent steps, `after_fast`
needing only `fast`, and `join` needing medium, slow and after_fast).
"""

from __future__ import annotations

import json
import os
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from prompts.untrusted import wrap
from tests.scripted_runs import Run, replanner_reason, run_scenario

FANOUT = Path(__file__).resolve().parent.parent / "scenarios" / "unit_fanout.json"


def run(tmp_path: Path, scenario: Path, **context: Any) -> Run:
    return run_scenario(
        tmp_path, scenario, goal="Run three jobs and join them.", tools=["write_file"], **context
    )


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    """One fanout run with four slots, shared by the tests that only read it."""
    tmp_path = tmp_path_factory.mktemp("fanout")
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("PLANEXEC_")]:
            mp.delenv(name)
        return run(tmp_path, FANOUT, max_concurrency=4), tmp_path


def test_independent_steps_overlap_and_ready_steps_do_not_wait(parallel: tuple[Run, Path]) -> None:
    r, tmp_path = parallel

    assert r.state["status"] == "done"
    # fast, medium and slow all start before any step finishes...
    assert r.step_events()[:3] == [
        ("step_started", "fast"),
        ("step_started", "medium"),
        ("step_started", "slow"),
    ]
    assert all(r.overlap(a, b) for a, b in combinations(["fast", "medium", "slow"], 2))
    # ...and after_fast starts as soon as fast is done, while slow is still running.
    assert r.index("step_started", "after_fast") < r.index("step_finished", "slow")
    assert r.results["after_fast"]["started_at"] < r.results["slow"]["finished_at"]
    assert r.overlap("after_fast", "slow")
    # join waits for everything it depends on.
    join_start = r.results["join"]["started_at"]
    assert all(r.results[d]["finished_at"] <= join_start for d in ("medium", "slow", "after_fast"))
    assert r.index("step_started", "join") > r.index("step_finished", "slow")
    # Every step ran exactly once.
    log = (tmp_path / "ws" / "log.txt").read_text(encoding="utf-8").split()
    assert sorted(log) == ["after_fast", "fast", "join", "medium", "slow"]


def test_max_concurrency_one_runs_one_step_at_a_time(tmp_path: Path) -> None:
    r = run(tmp_path, FANOUT, max_concurrency=1)

    assert r.state["status"] == "done"
    pairs = r.step_events()
    assert [kind for kind, _ in pairs] == ["step_started", "step_finished"] * 5
    assert [pairs[i][1] for i in range(0, 10, 2)] == [pairs[i][1] for i in range(1, 10, 2)]
    assert not any(r.overlap(a, b) for a, b in combinations(r.results, 2))
    # Ready steps start in plan order: after_fast, ready once fast is done, queues behind slow.
    assert [step for kind, step in pairs if kind == "step_started"] == [
        "fast",
        "medium",
        "slow",
        "after_fast",
        "join",
    ]


def test_dependency_results_reach_only_the_steps_that_depend_on_them(
    parallel: tuple[Run, Path],
) -> None:
    r, _ = parallel
    task = {s: r.log.task(s) for s in r.results}

    assert "(none: this step depends on no other step)" in task["fast"]
    assert "[fast] A fast job.\n" + wrap("result of step fast", "fast done") in task["after_fast"]
    for unrelated in ("slow done", "medium done", "[slow]", "[medium]"):
        assert unrelated not in task["after_fast"]

    for dep in (
        "[medium] A medium job.\n" + wrap("result of step medium", "medium done"),
        "[slow] A slow job.\n" + wrap("result of step slow", "slow done"),
    ):
        assert dep in task["join"]
    assert (
        "[after_fast] Needs only the fast job.\n"
        + wrap("result of step after_fast", "after_fast done")
        in task["join"]
    )
    assert "[fast]" not in task["join"]  # fast is a dependency of a dependency, not of join


def test_a_failure_stops_new_steps_and_in_flight_steps_finish(tmp_path: Path) -> None:
    def job(step_id: str, latency: float) -> list[dict[str, Any]]:
        write = {"name": "write_file", "args": {"path": f"{step_id}.txt", "content": step_id}}
        return [
            {"tool_calls": [write], "latency": latency},
            {"content": f"{step_id} done", "latency": latency},
        ]

    script = {
        "name": "unit_fanout_failure",
        "goal": "Three jobs; one breaks.",
        "tools": ["write_file"],
        "planner": {
            "steps": [
                {"id": "bad", "description": "Breaks at once.", "depends_on": []},
                {"id": "medium", "description": "A medium job.", "depends_on": []},
                {"id": "slow", "description": "A slow job.", "depends_on": []},
                {"id": "after_medium", "description": "Needs medium.", "depends_on": ["medium"]},
            ]
        },
        "executor": {
            "bad": job("bad", 0.01),
            "medium": job("medium", 0.05),
            "slow": job("slow", 0.15),
            "after_medium": [{"content": "after_medium done"}],
        },
        "replanner": [
            {"action": "continue", "reason": "bad is not needed; go on"},
            {"action": "finish", "reason": "done", "response": "Done without bad."},
        ],
        "faults": [{"step": "bad", "tool": "write_file", "kind": "raise", "message": "disk full"}],
    }
    path = tmp_path / "unit_fanout_failure.json"
    path.write_text(json.dumps(script), encoding="utf-8")

    # Not streamed: with the plan streaming, `bad` would fail before `medium` and `slow` had
    # even arrived (tests/unit/test_streaming.py covers that), and this is the scheduler's test.
    r = run(tmp_path, path, max_concurrency=4, stream_plan=False)

    res = r.results
    assert res["bad"]["status"] == "failed"
    assert res["bad"]["error"] == "tool write_file failed: disk full"
    # bad failed while medium and slow were in flight; after_medium became ready after that.
    assert res["bad"]["finished_at"] < res["medium"]["finished_at"] < res["slow"]["finished_at"]
    review = r.index("reviewed")
    before_review = [
        (e["event"], e["step_id"]) for e in r.events[:review] if e["event"].startswith("step_")
    ]
    assert before_review == [
        ("step_started", "bad"),
        ("step_started", "medium"),
        ("step_started", "slow"),
        ("step_finished", "bad"),
        ("step_finished", "medium"),
        ("step_finished", "slow"),
    ]
    assert (res["medium"]["status"], res["slow"]["status"]) == ("done", "done")
    # The replanner saw every result of the batch at once.
    first_review = r.log.texts("replanner")[0]
    assert replanner_reason("bad", "failed", "tool write_file failed: disk full") in first_review
    for step in ("medium", "slow"):
        block = wrap(f"result of step {step}", f"{step} done")
        assert f"[{step}] A {step} job.\n  status: done\n  result:\n{block}" in first_review
    assert "[after_medium] Needs medium. (after medium)\n  status: not run yet" in first_review
    # After "continue", the held-back step runs.
    assert r.index("step_started", "after_medium") > review
    assert res["after_medium"]["status"] == "done"
    assert r.state["status"] == "done"
