"""The wall-clock budget counts working time (graphs/run_clock.py): a wait for a person's
approval, or for `planexec resume` after a budget or a failure stopped the run, is left out."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command

from app.context import Context
from graphs.plan_execute import build_graph
from graphs.run_clock import checkpoint_time, waited_since
from tests.scripted_runs import write_scenario

# The wait is longer than the runs' wall budget; the runs themselves work for milliseconds once
# the tokenizer and the graph's imports are loaded (the warm fixture), well under the budget.
BUDGET_S = 1.5
WAIT_S = 2.0
LOG = {"path": "log.txt", "append": True}


def _script(s1: list) -> dict:
    return {
        "name": "run_clock",
        "goal": "g",
        "tools": ["write_file"],
        "planner": {"steps": [{"id": "s1", "description": "Log it."}]},
        "executor": {"s1": s1},
        "replanner": [{"action": "finish", "reason": "done", "response": "logged"}],
    }


def _write() -> dict:
    return {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": "s1\n"}}]}


def _logging_scenario(tmp_path: Path) -> str:
    """The model spec of a run whose one step writes a line, then answers."""
    return f"scripted:{write_scenario(tmp_path, _script([_write(), {'content': 'ok'}]))}"


@pytest.fixture(autouse=True, scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One run first, so the timed runs do not pay for loading the tokenizer and the tools."""
    folder = tmp_path_factory.mktemp("warm")
    spec = f"scripted:{write_scenario(folder, _script([_write(), {'content': 'ok'}]))}"
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    ctx = Context.every_role(spec, tools=["write_file"], workspace=str(folder / "ws"))
    graph.invoke({"goal": "g"}, {"configurable": {"thread_id": "w"}}, context=ctx)


def test_a_checkpoint_id_says_when_it_was_made() -> None:
    made = checkpoint_time(str(uuid6(clock_seq=7)))  # how LangGraph names checkpoints
    assert made is not None and abs(made - time.time()) < 1.0
    assert checkpoint_time(str(uuid.uuid4())) is None, "a random id has no time"
    assert checkpoint_time("not-a-uuid") is None
    assert waited_since("not a time") == 0.0
    ten_ago = datetime.fromtimestamp(time.time() - 10, UTC).isoformat()
    assert 10 <= waited_since(ten_ago) < 11  # a StateSnapshot's created_at


def test_a_wait_for_plan_approval_is_not_working_time(tmp_path: Path) -> None:
    """A person who takes longer than max_wall_seconds to approve: before, the run ended
    budget_exceeded the moment they said yes, with no step run."""
    spec = _logging_scenario(tmp_path)
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(
        spec, tools=["write_file"], workspace=str(tmp_path / "ws"), approve_plan=True,
        max_wall_seconds=BUDGET_S,
    )  # fmt: skip
    list(graph.stream({"goal": "g"}, config, context=ctx))
    assert graph.get_state(config).interrupts, "paused for approval"
    time.sleep(WAIT_S)
    list(graph.stream(Command(resume={"action": "approve"}), config, context=ctx))
    values = graph.get_state(config).values
    assert values["status"] == "done", values.get("reason")
    assert WAIT_S <= values["paused_seconds"] < WAIT_S + 1.0


def test_the_time_a_stopped_run_stood_is_not_working_time(tmp_path: Path) -> None:
    """A run a tool-call budget stopped, resumed with a raised budget after longer than its
    wall budget: it goes on. A resume without a raised budget is not a wait that is left out
    (the run stops again at once)."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    spec = _logging_scenario(tmp_path)
    ctx = Context.every_role(
        spec, tools=["write_file"], workspace=str(tmp_path / "ws"), max_total_tool_calls=1,
        max_wall_seconds=BUDGET_S,
    )  # fmt: skip
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        first = runner.start_run(persistence, "g", ctx, "t1")
        assert first["budget"]["budget"] == "max_total_tool_calls", first.get("reason")
        time.sleep(WAIT_S)
        done = runner.resume_run(persistence, "t1", budgets={"max_total_tool_calls": 10})
    assert done["status"] == "done", done.get("reason")
    assert done["paused_seconds"] >= WAIT_S


def test_the_time_a_failed_run_stood_is_not_working_time(tmp_path: Path) -> None:
    """s1's model failed after its write; the scenario is fixed and the run resumed after
    longer than its wall budget: it goes on from s1's journaled turns."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    path = write_scenario(tmp_path, _script([_write()]))  # no answer turn: the model fails
    ctx = Context.every_role(
        f"scripted:{path}", tools=["write_file"], workspace=str(tmp_path / "ws"),
        max_wall_seconds=BUDGET_S,
    )  # fmt: skip
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        first = runner.start_run(persistence, "g", ctx, "t1")
        assert first["status"] == "failed", first.get("reason")
        path.write_text(json.dumps(_script([_write(), {"content": "ok"}])), encoding="utf-8")
        time.sleep(WAIT_S)
        done = runner.resume_run(persistence, "t1", reopen_failed=True)
    assert done["status"] == "done", done.get("reason")
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\n", "the write was made again"
    assert done["paused_seconds"] >= WAIT_S


def test_a_clock_edited_to_nan_still_stops_the_run() -> None:
    """nan passes no `>=` check: a state edit that made the clock nan would switch the wall
    budget off. Such a clock counts from now, with no waits."""
    from graphs.budget import Spend

    ctx = Context.of(max_wall_seconds=5.0)
    for started, paused in [(float("nan"), 0.0), (time.time() - 10, float("nan")), ("x", -50)]:
        spent = Spend(ctx, {"started_at": started, "paused_seconds": paused})
        assert spent.spent()["wall_seconds"] == spent.spent()["wall_seconds"], "nan"
    hit = Spend(ctx, {"started_at": time.time() - 10, "paused_seconds": float("nan")}).exceeded()
    assert hit is not None and hit["budget"] == "max_wall_seconds"


@pytest.mark.parametrize(
    ("budget", "state"),
    [
        # A negative figure in one role bought back the other roles' tokens, and a negative
        # step's tool calls the others' calls.
        (
            {"max_total_tokens": 1000},
            {"usage": {"planner": {"input_tokens": 2000}, "x": {"input_tokens": -(10**9)}}},
        ),
        (
            {"max_total_tool_calls": 3},
            {"results": {"s1": {"tool_calls_made": 5}, "zz": {"tool_calls_made": -(10**6)}}},
        ),
        # A role with no cost makes the total unknown, and an unknown cost switched the cost
        # budget off; it now counts as reached.
        ({"max_cost_usd": 0.01}, {"usage": {"x": {"calls": 0}}}),
    ],
)
def test_edited_spend_figures_do_not_lift_a_budget(budget: dict, state: dict) -> None:
    from graphs.budget import Spend

    hit = Spend(Context.of(**budget), {**state, "started_at": time.time()}).exceeded()
    assert hit is not None and hit["budget"] == next(iter(budget))


def test_a_person_is_told_when_the_budget_is_used_up_before_they_answer(tmp_path: Path) -> None:
    """The planner alone used the wall budget: the pause says so, and approving ends the run
    budget_exceeded, resumable with a raised budget, instead of surprising the person."""
    spec = _logging_scenario(tmp_path)
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(
        spec, tools=["write_file"], workspace=str(tmp_path / "ws"), approve_plan=True,
        max_total_tokens=1,
    )  # fmt: skip
    events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    (paused,) = [e for e in events if e["event"] == "paused"]
    assert paused["budget"].startswith("approving ends the run at once: budget max_total_tokens")
    request = graph.get_state(config).interrupts[0].value
    assert request["budget"] == paused["budget"]
    list(graph.stream(Command(resume={"action": "approve"}), config, context=ctx))
    assert graph.get_state(config).values["status"] == "budget_exceeded"
    # Within its budget, the pause says nothing of it.
    ctx.max_total_tokens = 10**6
    config = {"configurable": {"thread_id": "u"}}
    events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    assert [e["budget"] for e in events if e["event"] == "paused"] == [""]


def test_a_new_run_on_the_thread_starts_with_no_waits(tmp_path: Path) -> None:
    """A second goal on the same thread (as in Studio) inherited the first run's waits, and
    with them a longer wall budget (run after run, past any ceiling)."""
    spec = _logging_scenario(tmp_path)
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    ctx = Context.every_role(
        spec, tools=["write_file"], workspace=str(tmp_path / "ws"), approve_plan=True
    )
    list(graph.stream({"goal": "g"}, config, context=ctx))
    time.sleep(0.2)
    list(graph.stream(Command(resume={"action": "approve"}), config, context=ctx))
    assert graph.get_state(config).values["paused_seconds"] >= 0.2
    ctx.approve_plan = False
    second = graph.invoke({"goal": "g2"}, config, context=ctx)
    assert second["status"] == "done" and second["paused_seconds"] == 0.0


def test_waits_add_up_across_an_approval_and_a_stop(tmp_path: Path) -> None:
    """Each wait adds to the ones before (an approval, then a budget stop), a refused answer's
    wait included, and a clock running behind is no wait."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    spec = _logging_scenario(tmp_path)
    ctx = Context.every_role(
        spec, tools=["write_file"], workspace=str(tmp_path / "ws"), approve_plan=True,
        max_total_tool_calls=1, max_wall_seconds=BUDGET_S,
    )  # fmt: skip
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        first = runner.start_run(persistence, "g", ctx, "t1")
        assert first["status"] == "paused"
        time.sleep(WAIT_S)
        refused = runner.answer_approval(persistence, "t1", {"action": "edit", "steps": []})
        assert refused["status"] == "paused", "an empty edit is refused"
        stopped = runner.answer_approval(persistence, "t1", {"action": "approve"})
        assert stopped["budget"]["budget"] == "max_total_tool_calls", stopped.get("reason")
        time.sleep(WAIT_S)
        done = runner.resume_run(persistence, "t1", budgets={"max_total_tool_calls": 10})
    assert done["status"] == "done", done.get("reason")
    assert done["paused_seconds"] >= 2 * WAIT_S
    ahead = datetime.fromtimestamp(time.time() + 10, UTC).isoformat()
    assert waited_since(ahead) == 0.0


def _v6_made_at(unix_seconds: float) -> str:
    """A UUIDv6 checkpoint id stamped at `unix_seconds` (RFC 9562's layout, as LangGraph's)."""
    stamp = int(unix_seconds * 10_000_000) + 0x01B21DD213814000  # 100 ns since 1582-10-15
    value = ((stamp >> 12) & 0xFFFFFFFFFFFF) << 80 | 0x6 << 76 | (stamp & 0x0FFF) << 64
    return str(uuid.UUID(int=value | 0x8 << 60 | 7 << 48 | 1))


def test_the_wait_counts_from_the_latest_checkpoint_of_the_nested_graphs() -> None:
    """A run inside a user's graph has a checkpoint per graph; the question waited at the
    latest (its own graph's). The outer, older one would count working time as paused."""
    from graphs.run_clock import waited_in_node

    now = time.time()
    assert abs(checkpoint_time(_v6_made_at(now - 100)) - (now - 100)) < 0.01
    config = {"configurable": {"checkpoint_map": {
        "": _v6_made_at(now - 100), "outer|inner": _v6_made_at(now - 10)}}}  # fmt: skip
    assert 9 <= waited_in_node(config) < 12
    # A UUIDv1 (time-based too, another layout) is no checkpoint time: nothing is counted.
    assert checkpoint_time(str(uuid.uuid1())) is None
    assert waited_in_node({"configurable": {"checkpoint_map": {"": str(uuid.uuid1())}}}) == 0.0
