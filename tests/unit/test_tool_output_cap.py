"""Every tool's answer is bounded (graphs/executor.py MAX_TOOL_OUTPUT_CHARS): the built-in tools
cap their own, but an import-path or MCP tool can answer with anything, and the answer is
journaled, checkpointed and sent to a model. A real tool by import path, through the graph."""

from __future__ import annotations

from pathlib import Path

from graphs.executor import MAX_TOOL_OUTPUT_CHARS
from tests.scripted_runs import run_scenario, write_scenario

FINISH = {"action": "finish", "reason": "done", "response": "ok"}


def _run(tmp_path: Path, plan: dict, executor: dict):
    script = {
        "name": "flood",
        "goal": "Read the flood.",
        "tools": ["tests.custom_tools:flood"],
        "planner": plan,
        "executor": executor,
        "replanner": [FINISH],
    }
    return run_scenario(tmp_path, write_scenario(tmp_path, script))


def test_a_tool_steps_huge_answer_is_cut_and_says_so(tmp_path: Path) -> None:
    step = {"id": "s1", "tool": "flood", "args": {"chars": 3 * MAX_TOOL_OUTPUT_CHARS}}
    run = _run(tmp_path, {"steps": [step]}, {})
    result = run.results["s1"]["result"]
    assert run.results["s1"]["status"] == "done"
    assert result.startswith("x" * 1000)
    assert len(result) < MAX_TOOL_OUTPUT_CHARS + 200
    assert result.endswith(
        f"[cut: tool flood answered {3 * MAX_TOOL_OUTPUT_CHARS} characters; the first "
        f"{MAX_TOOL_OUTPUT_CHARS} shown]"
    )


def test_a_model_steps_tool_answer_and_artifact_are_bounded(tmp_path: Path) -> None:
    big = 2 * MAX_TOOL_OUTPUT_CHARS
    call = {"name": "flood", "args": {"chars": big, "artifact_chars": big}}
    executor = {"s1": [{"tool_calls": [call]}, {"content": "read it"}]}
    run = _run(tmp_path, {"steps": [{"id": "s1", "description": "Read the flood."}]}, executor)
    assert run.results["s1"]["status"] == "done"
    # What the executor model was sent back: the data block around the cut answer.
    sent = run.log.texts("executor")[1]
    assert len(sent) < MAX_TOOL_OUTPUT_CHARS + 5_000
    assert f"answered {big} characters" in sent
    # And what the journal keeps of the call.
    (turns,) = [
        item.value
        for ns in run.store.list_namespaces(prefix=("planexec", "turns"))
        for item in run.store.search(ns)
        if item.key == "t0"
    ]
    assert len(str(turns)) < MAX_TOOL_OUTPUT_CHARS + 5_000
