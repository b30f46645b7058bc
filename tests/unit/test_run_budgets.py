"""Run budgets (graphs/budget.py) over a whole run: the real graph with scripted models.

What is counted must be counted from the run's start and across every visit of the executor node,
and a budget reached starts no new step. (Turn-level budget stops are in test_durable_turns.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.context import Context
from tests.scripted_runs import run_scenario, write_scenario

FINISH = {"action": "finish", "reason": "done", "response": "The answer."}


def calc(*expressions: str) -> list[dict[str, Any]]:
    """Executor turns: one calculator call per expression, then the last result as the answer."""
    calls = [
        {"tool_calls": [{"name": "calculator", "args": {"expression": e}}]} for e in expressions
    ]
    return [*calls, {"content": "{last_tool_result}"}]


def append(line: str) -> dict[str, Any]:
    """An executor turn that appends `line` to log.txt in the workspace."""
    args = {"path": "log.txt", "content": line, "append": True}
    return {"tool_calls": [{"name": "write_file", "args": args}]}


def scenario(tmp_path: Path, **parts: Any) -> Path:
    script = {"name": "unit_budgets", "goal": "Test goal.", "tools": ["calculator"], **parts}
    return write_scenario(tmp_path, script)


def test_tool_calls_of_earlier_executor_visits_count_toward_the_budget(tmp_path: Path) -> None:
    """s1's call was made in the first executor visit; the revision's s2 runs in a second one.
    The budget is the run's, so s2 may make one more call (its first append), not two."""
    path = scenario(
        tmp_path,
        tools=["calculator", "write_file"],
        planner={"steps": [{"id": "s1", "description": "Add."}]},
        executor={
            "s1": [
                {"tool_calls": [{"name": "calculator", "args": {"expression": "1 + 1"}}]},
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "odd"}}]},
                {"content": "2"},
            ],
            "s2": [append("a\n"), append("b\n"), {"content": "logged"}],
        },
        replanner=[
            {"action": "replan", "reason": "more", "steps": [{"id": "s2", "description": "Log."}]},
            FINISH,  # what a run that let s2 make both calls would reach
        ],
    )
    r = run_scenario(tmp_path, path, max_total_tool_calls=2)

    assert r.state["status"] == "budget_exceeded", r.state.get("reason")
    assert r.state["budget"]["budget"] == "max_total_tool_calls"
    assert r.state["replans"] == 1, "s2 ran in a second executor visit"
    assert (tmp_path / "ws" / "log.txt").read_text() == "a\n", "s2 made a call over the budget"
    assert r.state["budget"]["spent"]["tool_calls"] == 2
    assert "s2" not in r.results, "s2 was stopped before its second call: not finished"


def test_a_reached_budget_starts_no_new_step(tmp_path: Path) -> None:
    """s1 (a tool step: done with its one call) reaches the budget: s2, ready once s1 is done, is
    never started (a started step would be announced and counted as an execution, then stopped
    at its first turn)."""
    path = scenario(
        tmp_path,
        planner={
            "steps": [
                {"id": "s1", "tool": "calculator", "args": {"expression": "1 + 1"}},
                {"id": "s2", "description": "Double.", "depends_on": ["s1"]},
            ]
        },
        executor={"s2": [{"content": "4"}]},
        replanner=[FINISH],
    )
    r = run_scenario(tmp_path, path, max_total_tool_calls=1)

    assert r.state["status"] == "budget_exceeded", r.state.get("reason")
    assert r.started() == ["s1"]
    assert r.results["s1"]["result"] == "2"
    assert "s2" not in r.results
    assert r.calls("executor") == 0


def test_a_tool_step_the_budget_stops_before_its_call_is_not_finished(tmp_path: Path) -> None:
    """Two tool steps start together with room for one call: the one that comes second is
    stopped before calling, so it has no result (not an empty one, which would read as a
    finished step with a surprise)."""
    calc_step = {"tool": "calculator", "args": {"expression": "1 + 1"}}
    path = scenario(
        tmp_path,
        planner={"steps": [{"id": "s1", **calc_step}, {"id": "s2", **calc_step}]},
        executor={},
        replanner=[FINISH],
    )
    # The whole plan first, so both start in one go (streamed, s1 could finish before s2 came).
    r = run_scenario(tmp_path, path, max_total_tool_calls=1, max_concurrency=2, stream_plan=False)

    assert r.state["status"] == "budget_exceeded", r.state.get("reason")
    assert sorted(r.started()) == ["s1", "s2"]
    (finished,) = r.results.values()
    assert finished["status"] == "done" and finished["result"] == "2"
    assert r.state["budget"]["spent"]["tool_calls"] == 1


@pytest.mark.parametrize("stream_plan", [False, True], ids=["whole-plan", "streamed-plan"])
def test_the_wall_clock_budget_counts_the_planners_time(tmp_path: Path, stream_plan: bool) -> None:
    """docs/exactly-once.md: max_wall_seconds counts "seconds since the planner started the run".
    The planner's reply alone takes 0.5 s (scripted latency, a lower bound on the time spent),
    so a 0.4 s budget is spent before any step may start."""
    path = scenario(
        tmp_path,
        planner={"steps": [{"id": "s1", "description": "Add."}]},
        executor={"s1": calc("1 + 1")},
        replanner=[FINISH],
        latency={"planner": 0.5},
    )
    r = run_scenario(tmp_path, path, max_wall_seconds=0.4, stream_plan=stream_plan)

    assert r.state["status"] == "budget_exceeded", r.state.get("reason")
    assert r.state["budget"]["budget"] == "max_wall_seconds"
    assert r.state["budget"]["spent"]["wall_seconds"] >= 0.5
    assert r.started() == [], "no step starts once the budget is spent"
    assert r.calls("executor") == 0


@pytest.mark.parametrize("stream_plan", [False, True], ids=["whole-plan", "streamed-plan"])
def test_a_step_a_budget_stopped_is_continued_not_redone_on_resume(
    tmp_path: Path, stream_plan: bool
) -> None:
    """budget.py, docs/exactly-once.md: the turns of a step stopped mid-way are in its turn
    journal, so a resume with a raised budget continues exactly where the run stopped. s1
    appends to a file (its one allowed call), is stopped before its final turn, and the run is
    resumed with `runner.resume_run` as `planexec resume ID --max-tool-calls 10` does, on a
    real SQLite file: the append is replayed from the journal, never made a second time (a
    second one would come with a new idempotency key, which the file's ledger cannot catch).
    With a streamed plan s1 runs while the plan streams, in the planner's node."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    path = scenario(
        tmp_path,
        tools=["write_file"],
        planner={"steps": [{"id": "s1", "description": "Log it."}]},
        executor={"s1": [append("paid\n"), {"content": "logged: {last_tool_result}"}]},
        replanner=[FINISH],
    )
    ctx = Context.every_role(
        f"scripted:{path}",
        tools=["write_file"],
        workspace=str(tmp_path / "ws"),
        max_total_tool_calls=1,
        stream_plan=stream_plan,
    )
    log = tmp_path / "ws" / "log.txt"
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        events: list[dict[str, Any]] = []
        first = runner.start_run(persistence, "g", ctx, "t1", events.append)
        assert first["status"] == "budget_exceeded", first.get("reason")
        assert first["budget"]["spent"]["tool_calls"] == 1
        assert log.read_text() == "paid\n"
        assert [e["step_id"] for e in events if e["event"] == "step_started"] == ["s1"]

        again = runner.resume_run(persistence, "t1")
        assert again["status"] == "budget_exceeded", "a resume without a raised budget stops"
        assert log.read_text() == "paid\n"

        done = runner.resume_run(persistence, "t1", budgets={"max_total_tool_calls": 10})
    assert done["status"] == "done", done.get("reason")
    assert log.read_text() == "paid\n", "the append was made again"
    s1 = done["results"]["s1"]
    assert s1["result"] == "logged: appended 5 bytes to log.txt"
    assert s1["tool_calls_made"] == 1


def _one_call_allowed(tmp_path: Path, answer: str) -> Context:
    """A run whose one step appends to a file, then answers, with a budget of one tool call:
    the call is made and paid, and the budget stops the step before its answer."""
    path = scenario(
        tmp_path,
        tools=["write_file"],
        planner={"steps": [{"id": "s1", "description": "Log it."}]},
        executor={"s1": [append("paid\n"), {"content": answer}]},
        replanner=[FINISH],
    )
    return Context.every_role(
        f"scripted:{path}", tools=["write_file"], workspace=str(tmp_path / "ws"),
        max_total_tool_calls=1,
    )  # fmt: skip


def test_a_run_resumed_with_a_raised_budget_is_no_longer_finished_in_its_record(
    tmp_path: Path,
) -> None:
    """The record's final status is what `runs` and `prune` go by without reading state. A run
    resumed past `budget_exceeded` is going again: its record must stop saying it ended, or a
    resume stopped half-way (Ctrl-C) is listed as finished and pruned with its checkpoints."""
    from app.runs import runner, storage
    from app.runs.listing import find_runs
    from app.runs.persistence import open_persistence

    ctx = _one_call_allowed(tmp_path, "logged: {last_tool_result}")

    def ctrl_c(event: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        first = runner.start_run(persistence, "g", ctx, "t1")
        assert first["status"] == "budget_exceeded", first.get("reason")
        assert storage.prunable(persistence, 0) == ["t1"]

        with pytest.raises(KeyboardInterrupt):
            runner.resume_run(persistence, "t1", ctrl_c, budgets={"max_total_tool_calls": 10})
        assert "final_status" not in runner.run_record(persistence, "t1")
        assert storage.prunable(persistence, 0) == []
        [listed], _ = find_runs(persistence)
        assert listed["status"] == "interrupted"

        done = runner.resume_run(persistence, "t1")  # the raised budget was recorded
    assert done["status"] == "done", done.get("reason")


def test_a_turn_paid_before_a_budget_stop_counts_once_after_the_resume(tmp_path: Path) -> None:
    """docs/exactly-once.md: a journaled model reply counts once in the usage. s1's first turn
    is paid, then the budget stops s1; its usage is in the stopped run's state. The resume
    replays that turn: it must not be counted again (two executor calls were made, not three)."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    ctx = _one_call_allowed(tmp_path, "logged")
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        first = runner.start_run(persistence, "g", ctx, "t1")
        assert first["status"] == "budget_exceeded", first.get("reason")
        assert first["usage"]["executor"]["calls"] == 1

        done = runner.resume_run(persistence, "t1", budgets={"max_total_tool_calls": 10})
    assert done["status"] == "done", done.get("reason")
    assert done["usage"]["executor"]["calls"] == 2, "the replayed turn was counted twice"


def test_a_budget_stop_killed_before_its_checkpoint_still_counts_the_paid_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark that a stopped step's paid turns are counted travels with the usage that counts
    them, in one checkpoint write. Here the process 'dies' as the budget stop is checkpointed:
    neither is kept, the journal's turns are. The resume re-runs that node execution, replays
    s1's paid turn and must count it: a mark kept in the store instead made the replay skip it,
    and the run's usage (and its budgets) lost the turn for good."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    ctx = _one_call_allowed(tmp_path, "logged")
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        saver = persistence.checkpointer
        real_put, real_put_writes = saver.put, saver.put_writes

        def stopping(values: dict[str, Any]) -> None:
            if values.get("status") == "budget_exceeded":
                raise KeyboardInterrupt  # kill -9, as far as the checkpointer is concerned

        def put(config: Any, checkpoint: Any, *rest: Any) -> Any:
            stopping(checkpoint["channel_values"])
            return real_put(config, checkpoint, *rest)

        def put_writes(config: Any, writes: Any, *rest: Any) -> None:
            stopping(dict(writes))
            real_put_writes(config, writes, *rest)

        monkeypatch.setattr(saver, "put", put)
        monkeypatch.setattr(saver, "put_writes", put_writes)
        with pytest.raises(KeyboardInterrupt):
            runner.start_run(persistence, "g", ctx, "t1")
        stopped = persistence.graph.get_state({"configurable": {"thread_id": "t1"}}).values
        assert stopped.get("status") != "budget_exceeded", "the stop was checkpointed after all"
        monkeypatch.setattr(saver, "put", real_put)
        monkeypatch.setattr(saver, "put_writes", real_put_writes)

        again = runner.resume_run(persistence, "t1")
    assert again["status"] == "budget_exceeded", again.get("reason")
    assert again["usage"]["executor"]["calls"] == 1, "the paid turn went uncounted"
    assert (tmp_path / "ws" / "log.txt").read_text() == "paid\n", "the call was made again"


def test_tool_calls_of_steps_discarded_with_a_retried_plan_count(tmp_path: Path) -> None:
    """The planner's first reply is refused after its s1 started (while the plan streamed) and
    made its call; the retry's steps make two more, and s3, from a revision, the fourth: the
    budget, which stops s3 before its answer. Its executor visit counted from the state's
    results alone, which hold no discarded step: it saw three calls, and the run finished."""
    bad = {"steps": [{"id": "s1", "description": "Add."}, {"id": "s2", "depends_on": ["nope"],
                                                            "description": "Add."}]}  # fmt: skip
    good = {
        "steps": [
            {"id": "s1", "description": "Add one and one."},
            {"id": "s2", "description": "Add two and two."},
        ]
    }
    path = scenario(
        tmp_path,
        planner={"attempts": [bad, good]},
        executor={"s1": calc("1+1"), "s2": calc("2+2"), "s3": calc("3+3")},
        replanner=[
            {"action": "replan", "reason": "more", "steps": [{"id": "s3", "description": "Add."}]},
            FINISH,
        ],
    )
    r = run_scenario(tmp_path, path, max_total_tool_calls=4)
    assert [e["step_id"] for e in r.of_kind("step_discarded")] == ["s1"]
    assert r.state["status"] == "budget_exceeded", r.state.get("reason")
    assert r.state["budget"]["spent"]["tool_calls"] == 4
    assert "s3" not in r.state["results"], "s3 finished past the budget"


def test_a_resume_with_a_raised_budget_keeps_the_runs_other_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`resume --max-…` from a shell with other PLANEXEC_* settings: the budget changes, and
    nothing else. A copy made with dataclasses.replace filled every field at its default from
    that shell again (max_replans 0 there ended the resumed run at its first revision)."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    ctx = _one_call_allowed(tmp_path, "logged: {last_tool_result}")
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        assert runner.start_run(persistence, "g", ctx, "t1")["status"] == "budget_exceeded"
        monkeypatch.setenv("PLANEXEC_MAX_REPLANS", "0")
        monkeypatch.setenv("PLANEXEC_MAX_CONCURRENCY", "3")
        monkeypatch.setenv("PLANEXEC_TOOL_TIMEOUT_S", "77")
        done = runner.resume_run(persistence, "t1", budgets={"max_total_tool_calls": 10})
        recorded = runner.run_record(persistence, "t1")["context"]
    assert done["status"] == "done", done.get("reason")
    assert recorded["max_total_tool_calls"] == 10
    assert (recorded["max_replans"], recorded["max_concurrency"]) == (5, 16)
    assert recorded["tool_timeout_s"] == 300.0
    assert done["context"]["max_concurrency"] == 16


def test_resume_takes_budget_fields_only_and_a_plain_resume_changes_nothing(
    tmp_path: Path,
) -> None:
    """`resume_run(budgets=...)` replaces budgets (the step deadline among them), never another
    field of the recorded run; a resume of a budget stop with no raised budget goes nowhere:
    no checkpoint is written and the stopped steps' journal is left as it was."""
    from app.runs import runner
    from app.runs.persistence import open_persistence

    ctx = _one_call_allowed(tmp_path, "logged: {last_tool_result}")
    with open_persistence(str(tmp_path / "runs.sqlite")) as persistence:
        assert runner.start_run(persistence, "g", ctx, "t1")["status"] == "budget_exceeded"
        with pytest.raises(ValueError, match="not budget fields: workspace"):
            runner.resume_run(persistence, "t1", budgets={"workspace": "/"})
        config = {"configurable": {"thread_id": "t1"}}
        before = len(list(persistence.graph.get_state_history(config)))
        again = runner.resume_run(persistence, "t1")
        assert again["status"] == "budget_exceeded"
        assert len(list(persistence.graph.get_state_history(config))) == before
        done = runner.resume_run(
            persistence, "t1", budgets={"max_total_tool_calls": 10, "step_deadline_seconds": 5.0}
        )
        recorded = runner.run_record(persistence, "t1")["context"]
    assert done["status"] == "done", done.get("reason")
    assert recorded["step_deadline_seconds"] == 5.0
    assert recorded["workspace"] == str(tmp_path / "ws")


def test_calls_of_steps_stopped_mid_way_count_before_any_step_goes_on(tmp_path: Path) -> None:
    """Three parallel steps each append twice; a budget of 4 calls stops them mid-way. Each
    continuation without a raised budget (a server caller's `Command(goto="executor")`) let one
    step make a fresh call before the others replayed theirs: 5 appends, then 6. Journaled calls
    now count from the start; a raised budget then finishes every step with each line once."""
    from dataclasses import asdict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore
    from langgraph.types import Command

    from graphs.plan_execute import build_graph

    def line(tag: str) -> dict[str, Any]:
        return append(f"{tag}\n")

    executor = {
        f"s{i}": [line(f"s{i}-a"), {**line(f"s{i}-b"), "latency": 0.3}, {"content": "done"}]
        for i in (1, 2, 3)
    }
    steps = [{"id": f"s{i}", "description": f"Job {i}."} for i in (1, 2, 3)]
    path = scenario(
        tmp_path, tools=["write_file"], planner={"steps": steps}, executor=executor,
        replanner=[FINISH],
    )  # fmt: skip
    ctx = Context.every_role(
        f"scripted:{path}", tools=["write_file"], workspace=str(tmp_path / "ws"),
        max_total_tool_calls=4,
    )  # fmt: skip
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    log = tmp_path / "ws" / "log.txt"

    state = graph.invoke({"goal": "g"}, config, context=ctx)
    assert state["status"] == "budget_exceeded"
    for _ in range(3):
        state = graph.invoke(Command(goto="executor"), config, context=ctx)
        assert state["status"] == "budget_exceeded"
        assert state["budget"]["spent"]["tool_calls"] == 4
    assert len(log.read_text().split()) == 4, log.read_text()

    raised = {**asdict(ctx), "max_total_tool_calls": 10}
    scope = graph.get_state(config).values["budget_scope"]
    update = {"batch_cut": True, "budget_scope": scope, "status": "running", "context": raised}
    graph.update_state(config, update, as_node="executor")
    state = graph.invoke(None, config, context=ctx)
    assert state["status"] == "done", state.get("reason")
    assert sorted(log.read_text().split()) == [f"s{i}-{x}" for i in (1, 2, 3) for x in "ab"]


def test_a_retried_step_s_journaled_calls_count_until_its_own_attempt_is_settled() -> None:
    """A step's second attempt stopped mid-way by the budget has a result in the state: its
    first attempt's. Its journaled calls still count, or a step beside it calls first."""
    from langgraph.store.memory import InMemoryStore

    from graphs.budget import journaled_tool_calls
    from graphs.journal import StepJournal

    journal = StepJournal(InMemoryStore(), "thread", "run", "task")
    retry = {"id": "s1", "description": "d", "attempt": 2}
    turns = journal.turns(retry, {})
    for index in (0, 1):
        turns.tool_started(index)
        turns.tool_done(index, {"content": "ok"})
    # A call started and never answered (killed in flight) is no replay: the step decides
    # about it again (unknown_outcome), and counts it then.
    turns.tool_started(2)
    waiting = {"id": "s2", "description": "e", "depends_on": ["s1"]}
    state = {"plan": [retry, waiting], "results": {"s1": {"status": "failed", "attempts": 1}}}
    assert journaled_tool_calls(journal, state) == 2
    state["results"]["s1"] = {"status": "done", "attempts": 2}  # its result is in now
    assert journaled_tool_calls(journal, state) == 0
