"""A person approves, edits or rejects the plan: the approval node and its LangGraph interrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command

from app.context import Context
from graphs.plan_execute import build_graph
from tests.scripted_runs import write_scenario

SCRIPT = {
    "name": "unit_approval",
    "goal": "g",
    "tools": [],
    "planner": {
        "steps": [
            {"id": "s1", "description": "first"},
            {"id": "s2", "description": "second", "depends_on": ["s1"]},
        ]
    },
    "executor": {
        "s1": [{"content": "one"}],
        "s2": [{"content": "two"}],
        "s3": [{"content": "three"}],
    },
    "replanner": [{"action": "finish", "reason": "done", "response": "all done"}],
}

# The plan runs, then the replanner revises it (s3), which asks for approval again.
REVISED = {
    **SCRIPT,
    "replanner": [
        {"action": "replan", "reason": "more", "steps": [
            {"id": "s3", "description": "third", "depends_on": ["s2"]}]},
        {"action": "finish", "reason": "done", "response": "all done"},
    ],
}  # fmt: skip


class Paused:
    """A graph run with approval on, answered one call at a time."""

    def __init__(self, tmp_path: Path, script: dict[str, Any] = SCRIPT) -> None:
        spec = f"scripted:{write_scenario(tmp_path, script)}"
        self.ctx = Context.every_role(spec, tools=[], approve_plan=True)
        self.graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
        self.config = {"configurable": {"thread_id": "t"}}
        self.events: list[dict[str, Any]] = []
        self._go({"goal": "g"})

    def _go(self, graph_input: Any) -> None:
        self.events += [
            e
            for _, e in self.graph.stream(
                graph_input, self.config, context=self.ctx, stream_mode=["custom"]
            )
        ]

    def answer(self, answer: Any) -> None:
        self._go(Command(resume=answer))

    @property
    def request(self) -> dict[str, Any] | None:
        interrupts = self.graph.get_state(self.config).interrupts
        return interrupts[0].value if interrupts else None

    @property
    def values(self) -> dict[str, Any]:
        return self.graph.get_state(self.config).values

    def started(self) -> list[str]:
        return [e["step_id"] for e in self.events if e["event"] == "step_started"]


def test_the_run_pauses_before_any_step_and_approve_runs_the_plan(tmp_path: Path) -> None:
    run = Paused(tmp_path)
    assert run.request is not None and run.request["kind"] == "plan_approval"
    assert [s["id"] for s in run.request["steps"]] == ["s1", "s2"]
    assert run.started() == []
    assert [e["event"] for e in run.events][-1] == "paused"

    run.answer({"action": "approve"})

    assert run.request is None
    assert run.values["status"] == "done" and run.started() == ["s1", "s2"]


def test_an_edit_replaces_the_plan(tmp_path: Path) -> None:
    run = Paused(tmp_path)
    edit = [
        {"id": "s1", "description": "first"},
        {"id": "s3", "description": "third", "depends_on": ["s1"]},
    ]
    run.answer({"action": "edit", "steps": edit})

    assert run.values["status"] == "done"
    assert run.started() == ["s1", "s3"], "the replaced step s2 must not run"
    assert [h["action"] for h in run.values["history"]] == ["edited", "finish"]


def test_an_invalid_edit_or_answer_is_refused_and_the_run_stays_paused(tmp_path: Path) -> None:
    run = Paused(tmp_path)

    run.answer({"action": "edit", "steps": [{"id": "x", "description": "d", "depends_on": ["y"]}]})
    assert "unknown step 'y'" in run.request["error"]
    run.answer({"action": "edit", "steps": [{"description": "no id"}]})
    assert "do not match the step format" in run.request["error"]
    # One line per problem, naming the step, without pydantic's input dump and links.
    run.answer({"action": "edit", "steps": [{"id": "s1", "description": "d"}, {"id": "x9",
                                            "description": 5}]})  # fmt: skip
    error = run.request["error"]
    assert error.endswith("step 2 (x9): description: Input should be a valid string"), error
    run.answer({"action": "edit", "steps": "s1"})
    assert "'steps' must be a list of steps, got str" in run.request["error"]
    run.answer("edit")  # a server caller's bare word: refused, not a crash of the node
    assert "the plan has no steps" in run.request["error"]
    run.answer("maybe")
    assert "unknown answer 'maybe'" in run.request["error"]
    # An answer that names no action is no approval (a caller's empty or half-built answer).
    for vague in ({}, {"steps": [{"id": "s9", "description": "other"}]}):
        run.answer(vague)
        assert "unknown answer" in run.request["error"], vague

    assert [s["id"] for s in run.values["plan"]] == ["s1", "s2"], "nothing changed"
    assert run.started() == []
    run.answer({"action": "approve"})
    assert run.values["status"] == "done"


def test_reject_ends_the_run_with_the_reason(tmp_path: Path) -> None:
    run = Paused(tmp_path)
    run.answer({"action": "reject", "reason": "not now"})

    assert run.values["status"] == "rejected"
    assert run.values["reason"] == "plan rejected: not now"
    assert run.started() == []
    assert run.events[-1]["event"] == "finished" and run.events[-1]["status"] == "rejected"


def test_a_refused_edit_is_not_kept_in_the_checkpoint(tmp_path: Path) -> None:
    """LangGraph replays every earlier interrupt answer of a node run on resume: a refused edit
    must end that node run, so it is neither stored in the current checkpoint nor replayed."""
    run = Paused(tmp_path)
    marker = "REFUSED-EDIT-" + "x" * 50_000
    bad_step = {"id": "x", "description": marker, "depends_on": ["y"]}
    run.answer({"action": "edit", "steps": [bad_step]})
    assert "unknown step 'y'" in run.request["error"]
    assert len(run.request["error"]) <= 2_000

    snapshot = run.graph.get_state(run.config)
    stored = repr(snapshot.values) + repr([t.interrupts for t in snapshot.tasks])
    pending = run.graph.checkpointer.get_tuple(run.config).pending_writes
    assert marker not in stored
    assert all(marker not in repr(value) for _, _, value in pending)

    run.answer({"action": "approve"})
    assert run.values["status"] == "done" and run.values["approval_error"] == ""


def test_an_edit_is_held_to_the_run_s_tools_and_step_limit(tmp_path: Path) -> None:
    """An edited plan is checked like the planner's: it may not give a step a tool the run
    does not have, nor have more steps than max_steps."""
    run = Paused(tmp_path)
    run.answer({"action": "edit", "steps": [
        {"id": "s1", "description": "write it", "tools": ["write_file"]}]})  # fmt: skip
    assert "names tool 'write_file', which this run does not have" in run.request["error"]
    many = [{"id": f"e{i}", "description": "d"} for i in range(run.ctx.max_steps + 1)]
    run.answer({"action": "edit", "steps": many})
    assert f"the limit is {run.ctx.max_steps}" in run.request["error"]
    assert [s["id"] for s in run.values["plan"]] == ["s1", "s2"] and run.started() == []


def test_a_revision_edited_at_its_pause_may_build_on_completed_steps(tmp_path: Path) -> None:
    """After a replan the run pauses again; an edit then revises the remaining steps only, so
    its steps may depend on the completed ones (and may not reuse their ids)."""
    script = {**REVISED, "executor": {**SCRIPT["executor"], "s4": [{"content": "four"}]}}
    run = Paused(tmp_path, script)
    run.answer({"action": "approve"})
    assert [s["id"] for s in run.request["steps"]] == ["s3"]
    assert run.request["completed"] == ["s1", "s2"]

    run.answer({"action": "edit", "steps": [{"id": "s1", "description": "again"}]})
    assert "belongs to a completed step" in run.request["error"]
    run.answer({"action": "edit", "steps": [
        {"id": "s4", "description": "fourth", "depends_on": ["s1"]}]})  # fmt: skip
    assert run.request is None
    assert run.values["status"] == "done"
    assert run.started() == ["s1", "s2", "s4"], "s3 was edited away"


def test_an_answer_for_an_earlier_revision_is_refused_and_the_run_stays_paused(
    tmp_path: Path,
) -> None:
    """A copy of an answer that arrives after the plan changed (a second client, a retried
    request) must not approve the revision waiting by then, which nobody has seen: an answer
    that names its revision answers that revision only."""
    run = Paused(tmp_path, REVISED)
    first = run.request["revision"]
    assert [e for e in run.events if e["event"] == "paused"][-1]["revision"] == first
    run.answer({"action": "approve", "revision": first})
    second = run.request["revision"]
    assert second != first and [s["id"] for s in run.request["steps"]] == ["s3"]

    run.answer({"action": "approve", "revision": first})  # the first answer, again
    assert run.request is not None, "a stale answer must not approve the revision"
    assert f"plan revision '{first}'" in run.request["error"]
    assert f"waiting now is revision '{second}'" in run.request["error"]
    assert run.started() == ["s1", "s2"], "s3 must not run on an answer given for another plan"
    # Stale edits and rejections are refused the same way; odd revisions do not crash the node.
    for stale in (
        {"action": "reject", "reason": "no", "revision": first},
        {"action": "edit", "steps": [{"id": "s9", "description": "x"}], "revision": first},
        {"action": "approve", "revision": ["x" * 10_000]},
    ):
        run.answer(stale)
        assert "plan revision" in run.request["error"], stale
        assert len(run.request["error"]) < 400
    assert run.values["status"] != "rejected" and run.request["revision"] == second

    run.answer({"action": "approve", "revision": second})
    assert run.request is None and run.values["status"] == "done"
    assert run.started() == ["s1", "s2", "s3"]


def test_the_revision_follows_what_the_request_shows(tmp_path: Path) -> None:
    """The same plan asked about again keeps its revision (a refused answer does not change
    it, so a corrected answer may still name it); other steps give another."""
    from graphs.approval import plan_revision

    run = Paused(tmp_path)
    before = run.request["revision"]
    run.answer("maybe")
    assert run.request["revision"] == before
    steps = run.request["steps"]
    assert plan_revision(steps, []) == before
    assert plan_revision(steps, ["s0"]) != before
    assert plan_revision([{**steps[0], "description": "other"}, *steps[1:]], []) != before


def test_a_context_edited_into_something_that_is_not_an_object_is_refused(
    tmp_path: Path,
) -> None:
    """`update_state(..., {"context": "hello"})` was read as every default: approve_plan off,
    so the paused run went on to its steps with no approval."""
    import pytest

    from app.context import ContextError

    run = Paused(tmp_path)
    for edited in ("hello", [1, 2]):
        with pytest.raises(ContextError, match="not an object of Context fields"):
            run.graph.update_state(run.config, {"context": edited})
    assert run.graph.get_state(run.config).next == ("approval",)
    assert run.started() == []


def test_a_goal_that_is_not_text_or_too_long_ends_the_run_with_why(tmp_path: Path) -> None:
    """A server caller's `{"goal": 123}` crashed the planner (AttributeError: the run and thread
    ended `error` showing the last run's answer); a 5 MB goal was planned and paid for."""
    from prompts.untrusted import MAX_GOAL_CHARS

    cases = [(123, "the goal must be text, not int"), (["a"], "the goal must be text, not list")]
    cases.append(("a" * (MAX_GOAL_CHARS + 1), "the goal is 100,001 characters; at most 100,000"))
    for goal, why in cases:
        graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
        ctx = Context.every_role(f"scripted:{write_scenario(tmp_path, SCRIPT)}", tools=[])
        state = graph.invoke({"goal": goal}, {"configurable": {"thread_id": "t"}}, context=ctx)
        assert state["status"] == "failed" and state["reason"].startswith(why), state["reason"]
        assert "usage" not in state or not state["usage"], "refused before the planner is paid"
