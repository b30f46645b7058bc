"""Every tool call has an end (Context.tool_timeout_s, and the step deadline when it comes
first): a tool that does not answer fails its step, for the replanner, instead of holding the
run forever. Real tools by import path (tests/custom_tools.py), a sync one sleeping in a thread
and an async one on the event loop, through the compiled graph."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.scripted_runs import run_scenario, write_scenario

GIVE_UP = {"action": "finish", "reason": "the tool hung", "response": "Could not finish."}


def _stalling_run(tmp_path: Path, tool: str, seconds: float, **context: object):
    script = {
        "name": "stall",
        "goal": "Wait for the slow tool.",
        "tools": [f"tests.custom_tools:{tool}"],
        "planner": {"steps": [{"id": "s1", "tool": tool, "args": {"seconds": seconds}}]},
        "executor": {},
        "replanner": [GIVE_UP],
    }
    started = time.monotonic()
    run = run_scenario(tmp_path, write_scenario(tmp_path, script), **context)
    return run, time.monotonic() - started


@pytest.mark.parametrize(("tool", "seconds"), [("stall_async", 60), ("stall", 3)])
def test_a_tool_that_does_not_answer_in_time_fails_its_step(
    tmp_path: Path, tool: str, seconds: float
) -> None:
    # A sync tool's thread cannot be stopped: it sleeps on (3 s, so the test process can exit).
    run, took = _stalling_run(tmp_path, tool, seconds, tool_timeout_s=0.3)
    s1 = run.results["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == f"tool {tool} did not answer within 0.3 s (tool_timeout_s)"
    assert run.state["status"] == "done" and run.state["response"] == "Could not finish."
    assert took < 2.5, f"the run waited {took:.1f} s for the tool"


def test_the_step_deadline_stops_a_tool_call_that_runs_past_it(tmp_path: Path) -> None:
    run, took = _stalling_run(tmp_path, "stall_async", 60, step_deadline_seconds=0.3)
    s1 = run.results["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == "step deadline of 0.3 s passed during tool stall_async"
    assert took < 2.5, f"the run waited {took:.1f} s for the tool"


def test_a_timeout_that_is_not_above_zero_is_refused() -> None:
    from app.context import Context, ContextError

    for bad in (0, -1):
        with pytest.raises(ContextError, match="'tool_timeout_s' .* greater than 0"):
            Context.of(tool_timeout_s=bad)


@pytest.mark.parametrize(
    ("tool", "faults"),
    [
        ("stall", []),  # a @tool function (StructuredTool)
        ("stall_class", []),  # a BaseTool subclass with only `_run`
        # wrapped by a scenario's fault (for a step that never runs): still its own thread
        ("stall", [{"step": "other", "tool": "stall", "kind": "raise"}]),
    ],
)
def test_sync_tools_stuck_past_their_timeout_do_not_hold_up_the_rest_of_the_run(
    tmp_path: Path, tool: str, faults: list
) -> None:
    # Each stuck sync tool keeps its thread (threads cannot be stopped). In the event loop's
    # shared pool (6 threads on 2 cores) ten of them held every slot, and the run's own journal
    # writes waited behind them: 21 s for a run whose every call was over in 0.3 s.
    n = 10
    script = {
        "name": "stalls",
        "goal": "Wait for ten slow tools.",
        "tools": [f"tests.custom_tools:{tool}"],
        "planner": {
            "steps": [{"id": f"s{i}", "tool": tool, "args": {"seconds": 30}} for i in range(n)]
        },
        "executor": {},
        "replanner": [GIVE_UP],
        "faults": faults,
    }
    started = time.monotonic()
    run = run_scenario(
        tmp_path, write_scenario(tmp_path, script), tool_timeout_s=0.3, max_concurrency=n
    )
    took = time.monotonic() - started
    assert len(run.results) == n
    assert {r["error"] for r in run.results.values()} == {
        f"tool {tool} did not answer within 0.3 s (tool_timeout_s)"
    }
    # Far from the 21 s of the bug, far above the ~1 s it takes: a loaded machine (a mutation
    # review ran two suites at once on 2 cores) took it past an earlier bound of 5 s.
    assert took < 12, f"the run waited {took:.1f} s behind stuck tools"


def test_a_sync_tool_raising_stop_iteration_fails_its_step_at_once(tmp_path: Path) -> None:
    # An asyncio future refuses StopIteration: handed over as it is, the step waited for the
    # tool timeout and then blamed the tool for not answering.
    script = {
        "name": "empty",
        "goal": "Take from an empty iterator.",
        "tools": ["tests.custom_tools:empty_next"],
        "planner": {"steps": [{"id": "s1", "tool": "empty_next", "args": {}}]},
        "executor": {},
        "replanner": [GIVE_UP],
    }
    started = time.monotonic()
    run = run_scenario(tmp_path, write_scenario(tmp_path, script), tool_timeout_s=5)
    assert time.monotonic() - started < 4
    assert run.results["s1"]["error"] == "tool empty_next failed: StopIteration raised"
