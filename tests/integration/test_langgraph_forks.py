# ruff: noqa: F811  (the server fixtures are imported, then named as parameters)
"""Time travel, forks and state edits over a real `langgraph dev`, as Studio makes them.

A run's step journal is scoped to the node execution (graphs/journal.py): a resume re-enters the
same one and takes its finished steps, a fork or an edit starts a new one and runs its steps
afresh, and the branch it left keeps its own results. Routing reads the run's recorded context,
so `update_state` works at every checkpoint (there is no runtime there).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk.client import SyncLangGraphClient

from tests.helpers import finished_ids, instant_demo, of_kind, started_ids
from tests.integration.test_langgraph_server import (  # noqa: F401 (fixtures)
    GOAL,
    GRAPH_ID,
    client,
    new_thread,
    scripted_context,
    wait_until_settled,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def finished_demo(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> tuple[str, list[dict[str, Any]]]:
    """A thread whose instant demo ran to the end; (thread id, its history, newest first)."""
    thread_id = new_thread()
    # Whole plan first (not streamed): a checkpoint then sits between the planner and the steps,
    # the point these tests fork from and edit.
    ctx = scripted_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)), stream_plan=False)
    client.runs.wait(thread_id, GRAPH_ID, input={"goal": GOAL}, context=ctx)
    wait_until_settled(client, thread_id)
    history = client.threads.get_history(thread_id, limit=100)
    assert history[0]["values"]["status"] == "done", history[0]["values"].get("reason")
    return thread_id, history


def after_planner(history: list[dict[str, Any]]) -> dict[str, Any]:
    [checkpoint] = [h for h in history if h["metadata"]["step"] == 1]
    assert checkpoint["next"] == ["executor"] and checkpoint["values"]["plan"]
    return checkpoint


def stream_from(
    client: SyncLangGraphClient, thread_id: str, checkpoint_id: str
) -> list[dict[str, Any]]:
    """Continue `thread_id` from `checkpoint_id` with no input and no context; its events."""
    events = [
        part.data
        for part in client.runs.stream(
            thread_id, GRAPH_ID, input=None, checkpoint_id=checkpoint_id, stream_mode="custom"
        )
        if part.event == "custom"
    ]
    wait_until_settled(client, thread_id)
    return events


def test_time_travel_from_after_the_planner_runs_the_steps_again(
    client: SyncLangGraphClient, finished_demo: tuple[str, list[dict[str, Any]]]
) -> None:
    thread_id, history = finished_demo
    checkpoint = after_planner(history)

    events = stream_from(client, thread_id, checkpoint["checkpoint"]["checkpoint_id"])

    # Every step ran: none was taken from the first branch's journal.
    assert started_ids(events)[:2] == ["s1", "s2"]
    assert finished_ids(events, recovered=True) == []
    assert of_kind(events, "finished")[-1]["status"] == "done"
    # No context was passed: the run used the one its planner recorded (scripted models; the
    # defaults would have needed OPENAI_API_KEY).
    state = client.threads.get_state(thread_id)["values"]
    assert state["status"] == "done", state.get("reason")


def test_fork_with_an_edited_step_runs_it_anew_and_the_old_branch_keeps_its_results(
    client: SyncLangGraphClient, finished_demo: tuple[str, list[dict[str, Any]]]
) -> None:
    thread_id, history = finished_demo
    original_end, checkpoint = history[0], after_planner(history)
    plan = checkpoint["values"]["plan"]
    edited = [
        {**s, "description": "Count the orders per product line, again."} if s["id"] == "s1" else s
        for s in plan
    ]

    fork = client.threads.update_state(
        thread_id,
        {"plan": edited},
        as_node="planner",
        checkpoint_id=checkpoint["checkpoint"]["checkpoint_id"],
    )
    fork_state = client.threads.get_state(thread_id, checkpoint_id=fork["checkpoint_id"])
    assert fork_state["next"] == ["executor"]
    events = stream_from(client, thread_id, fork["checkpoint_id"])

    started = of_kind(events, "step_started")
    s1 = next(e for e in started if e["step_id"] == "s1")
    assert s1["description"] == "Count the orders per product line, again."
    assert finished_ids(events, recovered=True) == []
    new_end = client.threads.get_state(thread_id)
    assert new_end["values"]["status"] == "done", new_end["values"].get("reason")
    assert new_end["values"]["plan"][0]["description"].endswith("again.")
    old_s1 = original_end["values"]["results"]["s1"]
    new_s1 = new_end["values"]["results"]["s1"]
    assert new_s1["started_at"] > old_s1["finished_at"], "s1 was not run again in the fork"
    # The branch the fork left is untouched.
    old_end = client.threads.get_state(
        thread_id, checkpoint_id=original_end["checkpoint"]["checkpoint_id"]
    )
    assert old_end["values"]["results"] == original_end["values"]["results"]
    assert old_end["values"]["plan"][0]["description"] == plan[0]["description"]


def test_update_state_works_at_every_checkpoint(
    client: SyncLangGraphClient, finished_demo: tuple[str, list[dict[str, Any]]]
) -> None:
    thread_id, history = finished_demo
    assert len(history) == 7  # input, planner, executor, replanner, executor, replanner + start
    for checkpoint in history:
        edited = client.threads.update_state(
            thread_id,
            {"goal": "A goal a person edited."},  # a key even the input checkpoint takes
            checkpoint_id=checkpoint["checkpoint"]["checkpoint_id"],
        )
        state = client.threads.get_state(thread_id, checkpoint_id=edited["checkpoint_id"])
        assert state["values"]["goal"] == "A goal a person edited."
        # Each edit goes where the run went from there (an edit of the input starts it).
        expected = ["planner"] if checkpoint["next"] == ["__start__"] else checkpoint["next"]
        assert state["next"] == expected, checkpoint["metadata"]["step"]


def test_history_says_what_each_checkpoint_holds(
    client: SyncLangGraphClient, finished_demo: tuple[str, list[dict[str, Any]]]
) -> None:
    _, history = finished_demo
    summaries = [h["values"].get("summary") for h in reversed(history)]

    assert summaries[:2] == [None, None]  # the input, before any node ran
    assert summaries[2] == "planner: planned 4 steps: s1, s2, s3, s4"
    assert summaries[3].startswith("executor: s1 done; s2 done (surprise: ")
    assert summaries[4].startswith("replanner: replan (5 new steps: s5, s6, s7, s8, s9)")
    assert summaries[5].startswith("executor: s5 done")
    assert summaries[6].startswith("replanner: finish")


def test_a_summary_says_a_batch_was_cut_and_stays_one_short_line() -> None:
    """A checkpoint written after a Ctrl-C says its batch was stopped on request (a person
    choosing where to fork must see the run did not finish there), and a summary of many long
    step ids is cut to MAX_CHARS, not stored whole in every checkpoint."""
    from graphs.summaries import MAX_CHARS, describe

    result = {"id": "s1", "status": "done"}
    cut = describe("executor", {"results": {"s1": result}, "batch_cut": True})
    assert cut == "executor: s1 done (stopped on request)"
    plan = [{"id": f"step_{i:03d}_" + "x" * 40} for i in range(40)]
    long = describe("planner", {"plan": plan})
    assert long.startswith("planner: planned 40 steps: step_000_")
    assert len(long) == MAX_CHARS and long.endswith("…")
