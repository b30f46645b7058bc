"""Every tool's answer is bounded (graphs/executor.py MAX_TOOL_OUTPUT_CHARS), and so is every
error (MAX_ERROR_CHARS): the built-in tools cap their own, but an import-path or MCP tool can
answer, or raise, with anything, and the answer is journaled, checkpointed and sent to a model.
A real tool by import path, through the graph."""

from __future__ import annotations

from pathlib import Path

from graphs.executor import MAX_ERROR_CHARS, MAX_TOOL_OUTPUT_CHARS
from tests.scripted_runs import run_scenario, write_scenario

FINISH = {"action": "finish", "reason": "done", "response": "ok"}


def _run(tmp_path: Path, plan: dict, executor: dict):
    script = {
        "name": "flood",
        "goal": "Read the flood.",
        "tools": ["tests.custom_tools:flood", "tests.custom_tools:fail_loudly"],
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


def test_a_tools_huge_error_is_cut_everywhere_it_goes(tmp_path: Path) -> None:
    """An MCP tool's error result arrives as an exception carrying the whole answer: 5 MB of it
    went into the step's error, its events, the journal and the model's next turn."""
    big = 5_000_000
    call = {"name": "fail_loudly", "args": {"chars": big}}
    executor = {"s1": [{"tool_calls": [call]}, {"content": "it failed"}]}
    steps = [
        {"id": "s1", "description": "Try it."},
        {"id": "s2", "tool": "fail_loudly", "args": {"chars": big}},
    ]
    run = _run(tmp_path, {"steps": steps}, executor)
    for step_id in ("s1", "s2"):
        error = run.results[step_id]["error"]
        assert error.startswith("tool fail_loudly failed: eeee"), step_id
        assert len(error) < MAX_ERROR_CHARS + 100
        assert error.endswith("characters in all]"), step_id
        assert f"[cut: {len(f'tool fail_loudly failed: {big * chr(101)}')} characters" in error
    prompts = [t for role in ("executor", "replanner") for t in run.log.texts(role)]
    assert prompts and max(map(len, prompts)) < 5 * MAX_ERROR_CHARS, "what a model was sent"
    assert len(str(run.events)) < 10 * MAX_ERROR_CHARS
    journal = [
        item.value
        for ns in run.store.list_namespaces(prefix=("planexec",))
        for item in run.store.search(ns)
    ]
    assert len(str(journal)) < 10 * MAX_ERROR_CHARS


def test_a_models_huge_surprise_is_cut(tmp_path: Path) -> None:
    call = {"name": "flag_surprise", "args": {"reason": "r" * 1_000_000}}
    executor = {"s1": [{"tool_calls": [call]}, {"content": "odd"}]}
    run = _run(tmp_path, {"steps": [{"id": "s1", "description": "Look."}]}, executor)
    surprise = run.results["s1"]["surprise"]
    assert surprise.startswith("rrrr") and len(surprise) < MAX_ERROR_CHARS + 100
