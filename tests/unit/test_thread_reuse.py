"""A thread can hold several runs in turn (Studio sends a second goal to the same thread)."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.runs.demo import demo_context
from graphs.plan_execute import build_graph
from tests.helpers import instant_demo


def test_second_goal_on_a_thread_runs_afresh(tmp_path: Path) -> None:
    ctx = demo_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)))
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "shared"}}
    first = graph.invoke({"goal": "first goal"}, config, context=ctx)

    events = [
        e
        for _, e in graph.stream(
            {"goal": "second goal"}, config, context=ctx, stream_mode=["custom"]
        )
    ]
    second = graph.get_state(config).values

    assert first["status"] == second["status"] == "done"
    assert second["goal"] == "second goal"
    assert second["run_id"] != first["run_id"]
    # Every step really ran again: nothing was taken from the first run's journal.
    started = [e["step_id"] for e in events if e["event"] == "step_started"]
    assert sorted(started) == ["s1", "s2", "s5", "s6", "s7", "s8", "s9"]
    assert not [e for e in events if e.get("recovered")]
    # Accumulators start from zero: usage and history are the second run's only.
    assert second["usage"]["executor"]["calls"] == first["usage"]["executor"]["calls"]
    assert [h["action"] for h in second["history"]] == ["replan", "finish"]
    assert set(second["results"]) == {"s1", "s2", "s5", "s6", "s7", "s8", "s9"}
