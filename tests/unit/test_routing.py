"""How the compiled graph routes between planner, executor and replanner.

Every test runs the real graph (`build_graph`) with scripted models: a small scenario written to
`tmp_path` says what each role answers, turn by turn. Latencies are zero, so the file runs fast.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command

from app.context import Context
from graphs.plan_execute import build_graph
from graphs.routes import follow_route, recorded_route
from tests.scripted_runs import Run, replanner_reason, run_scenario, write_scenario


def scenario(**parts: Any) -> dict[str, Any]:
    """A scenario with defaults for the parts a test does not care about."""
    return {"name": "unit_routing", "goal": "Test goal.", "tools": ["calculator"], **parts}


def plan(*steps: tuple[str, list[str]]) -> dict[str, Any]:
    return {"steps": [{"id": i, "description": f"Do {i}.", "depends_on": d} for i, d in steps]}


def answer(text: str) -> list[dict[str, Any]]:
    """Executor turns of a step that answers at once, without tools."""
    return [{"content": text}]


def calc(expression: str, then: str = "{last_tool_result}") -> list[dict[str, Any]]:
    """Executor turns of a step that calls the calculator once, then answers."""
    return [
        {"tool_calls": [{"name": "calculator", "args": {"expression": expression}}]},
        {"content": then},
    ]


FINISH = {"action": "finish", "reason": "done", "response": "The answer."}


def run(tmp_path: Path, script: dict[str, Any], **context: Any) -> Run:
    return run_scenario(tmp_path, write_scenario(tmp_path, script), goal=script["goal"], **context)


# (a) surprises ---------------------------------------------------------------------------------


def test_flagged_surprise_calls_the_replanner_before_the_next_step(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={
            "s1": [
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "no such table"}}]},
                {"content": "nothing found"},
            ],
            "s2": answer("unused"),
        },
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done"
    assert r.started() == ["s1"]  # s2 was ready, but the replanner looked first
    assert r.state["results"]["s1"]["surprise"] == "no such table"
    assert r.state["replanner_calls"] == 1
    [prompt] = r.log.texts("replanner")
    assert replanner_reason("s1", "reported a surprise", "no such table") in prompt


def test_empty_tool_result_is_a_surprise(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={"s1": calc("1 + 1"), "s2": answer("unused")},
        replanner=[FINISH],
        faults=[{"step": "s1", "tool": "calculator", "kind": "empty"}],
    )
    r = run(tmp_path, script)

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "done"
    assert s1["surprise"].startswith("calculator returned an empty result")
    assert r.started() == ["s1"]
    assert r.calls("replanner") == 1
    assert (
        replanner_reason("s1", "reported a surprise", "calculator returned an empty result")
        in (r.log.texts("replanner")[0])
    )


def test_an_empty_sql_result_is_a_surprise_even_if_the_executor_says_nothing(
    tmp_path: Path,
) -> None:
    """The executor model queries a real SQLite file, gets no rows, and answers without
    flag_surprise: the executor itself must flag the empty result for the replanner."""
    database = tmp_path / "shop.sqlite"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, order_date TEXT)")
        conn.execute("INSERT INTO orders VALUES (1, '07/15/2026')")  # not an ISO date
    conn.close()
    query = "SELECT id FROM orders WHERE order_date >= '2026-07-01'"
    script = scenario(
        tools=["sql_query"],
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={
            "s1": [
                {"tool_calls": [{"name": "sql_query", "args": {"query": query}}]},
                {"content": "No Q3 orders."},
            ],
            "s2": answer("unused"),
        },
        replanner=[FINISH],
    )
    r = run(tmp_path, script, sql_database=str(database))

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "done"
    assert s1["result"] == "No Q3 orders."
    assert s1["tool_calls"][0]["output"] == "Query returned 0 rows (columns: id)."
    assert s1["surprise"].startswith("sql_query returned an empty result for ")
    assert r.started() == ["s1"]  # s2 was ready, but the replanner looked first
    assert (
        replanner_reason("s1", "reported a surprise", "sql_query returned an empty result")
        in (r.log.texts("replanner")[0])
    )


# (b) a raising tool, and a retry of the same step id -------------------------------------------


def test_raising_tool_fails_the_step_and_the_replanner_retries_it(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", [])),
        executor={"s1": calc("2 * 21"), "s1#2": answer("42, computed by hand")},
        replanner=[
            {
                "action": "replan",
                "reason": "the calculator is down; retry without it",
                "steps": [{"id": "s1", "description": "Compute 2*21 by hand."}],
            },
            FINISH,
        ],
        faults=[{"step": "s1", "tool": "calculator", "kind": "raise", "message": "disk on fire"}],
    )
    r = run(tmp_path, script)

    first, second = r.of_kind("step_finished")
    assert first["status"] == "failed"
    assert first["error"] == "tool calculator failed: disk on fire"
    assert (
        replanner_reason("s1", "failed", "tool calculator failed: disk on fire")
        in r.log.texts("replanner")[0]
    )
    assert [(e["step_id"], e["attempt"]) for e in r.of_kind("step_started")] == [
        ("s1", 1),
        ("s1", 2),
    ]
    assert second["status"] == "done"
    result = r.state["results"]["s1"]
    assert (result["status"], result["attempts"], result["result"]) == (
        "done",
        2,
        "42, computed by hand",
    )
    assert r.state["plan"] == [
        {"id": "s1", "description": "Compute 2*21 by hand.", "depends_on": [], "attempt": 2}
    ]
    assert r.state["status"] == "done"
    assert r.state["replans"] == 1


def test_a_real_tool_error_fails_the_step_with_the_tools_message(tmp_path: Path) -> None:
    script = scenario(
        planner=GOOD_PLAN,
        executor={"s1": calc("1/0")},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == "tool calculator failed: calculator could not evaluate '1/0': " + (
        "division by zero."
    )
    assert s1["tool_calls"][0]["ok"] is False
    assert r.state["replanner_calls"] == 1


# (c) the replan cap ----------------------------------------------------------------------------


def test_replan_cap_ends_the_run_with_an_answer_from_completed_results(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={
            "s1": [
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "odd data"}}]},
                {"content": "odd data found"},
            ],
            "s3": answer("cleaned the data"),
            "s4": answer("unused"),
        },
        replanner=[
            {"action": "replan", "steps": [{"id": "s3", "description": "Clean."}]},
            {"action": "replan", "steps": [{"id": "s4", "description": "More."}]},
        ],
    )
    r = run(tmp_path, script, max_replans=1)

    assert r.state["status"] == "replan_limit"
    assert r.state["reason"] == "the replanner asked for revision 2; max_replans is 1"
    assert r.state["replans"] == 1
    assert r.started() == ["s1", "s3"]  # the refused revision's s4 never ran
    assert r.state["response"] == (
        "The run stopped before a final answer. Results so far:\n"
        "- s1 (Do s1.): odd data found\n"
        "- s3 (Clean.): cleaned the data"
    )
    assert r.of_kind("finished")[-1]["status"] == "replan_limit"


# (d) malformed structured output is retried with the error fed back ----------------------------

GOOD_PLAN = plan(("s1", []))
CYCLE = plan(("a", ["b"]), ("b", ["a"]))
RAW = {"raw": "Sure! Step one: look at the data."}


@pytest.mark.parametrize(
    ("plan_format", "unreadable"),
    [
        ("json", "That reply was rejected: no Plan was returned"),
        ("lines", "That reply was rejected: the reply could not be read: line 1: 'Sure! Step"),
    ],
)
def test_planner_recovers_after_two_bad_plans(
    tmp_path: Path, plan_format: str, unreadable: str
) -> None:
    script = scenario(
        planner={"attempts": [RAW, CYCLE, GOOD_PLAN]},
        executor={"s1": answer("ok")},
        replanner=[FINISH],
    )
    r = run(tmp_path, script, plan_format=plan_format)

    assert r.state["status"] == "done"
    assert r.calls("planner") == 3
    first, second, third = r.log.texts("planner")
    assert "rejected" not in first
    assert unreadable in second
    assert "the dependencies form a cycle: a -> b -> a" in third


def test_planner_gives_up_after_three_bad_plans(tmp_path: Path) -> None:
    script = scenario(
        planner={"attempts": [RAW, CYCLE, CYCLE]},
        executor={},
    )
    r = run(tmp_path, script)  # no exception escapes

    assert r.state["status"] == "failed"
    assert r.state["reason"] == (
        "planner output invalid after 3 attempts: the dependencies form a cycle: a -> b -> a"
    )
    assert r.calls("planner") == 3
    assert r.started() == []
    assert r.of_kind("finished")[-1]["reason"] == r.state["reason"]


def test_planner_schema_error_is_fed_back(tmp_path: Path) -> None:
    no_id = {"steps": [{"description": "Do it."}]}
    script = scenario(
        planner={"attempts": [no_id, GOOD_PLAN]},
        executor={"s1": answer("ok")},
        replanner=[FINISH],
    )
    r = run(tmp_path, script, plan_format="json")  # a schema is what the JSON format checks

    assert r.state["status"] == "done"
    assert "does not match the Plan schema" in r.log.texts("planner")[1]
    # The rejected reply was a tool call: a provider refuses a conversation where a tool call
    # is not answered by a tool message, so the feedback must be one, for that call.
    _, retry = [c for c in r.log.calls if c["role"] == "planner"]
    rejected, feedback = retry["messages"][-2:]
    assert feedback.type == "tool"
    assert feedback.tool_call_id == rejected.tool_calls[0]["id"]
    assert feedback.content.startswith("That reply was rejected: the reply does not match")


def test_every_problem_of_a_rejected_plan_is_fed_back_at_once(tmp_path: Path) -> None:
    """The model fixes what it is told: a retry that named only the first problem would cost
    one attempt per problem, and three attempts can run out before the plan is valid."""
    two_problems = plan(("s1", ["ghost"]), ("s1", []))
    script = scenario(
        planner={"attempts": [two_problems, GOOD_PLAN]},
        executor={"s1": answer("ok")},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done"
    assert (
        "That reply was rejected: step id 's1' is used more than once; ids must be unique; "
        "step 's1' depends on unknown step 'ghost'. Reply again"
    ) in r.log.texts("planner")[1]


BAD_REVISION = {
    "action": "replan",
    "reason": "x",
    "steps": [{"id": "s2", "description": "Needs a ghost.", "depends_on": ["ghost"]}],
}


def test_replanner_recovers_after_two_bad_decisions(tmp_path: Path) -> None:
    script = scenario(
        planner=GOOD_PLAN,
        executor={"s1": answer("ok")},
        replanner=[{"attempts": [{"raw": "I think we are done."}, BAD_REVISION, FINISH]}],
    )
    # The end decision as JSON: as text (the default) any reply is an answer or more steps.
    r = run(tmp_path, script, plan_format="json")

    assert r.state["status"] == "done"
    assert r.state["response"] == "The answer."
    assert r.calls("replanner") == 3
    assert r.state["replanner_calls"] == 1  # one decision, three attempts
    _, second, third = r.log.texts("replanner")
    assert "no ReplanDecision was returned" in second
    assert "step 's2' depends on unknown step 'ghost'" in third


def test_replanner_gives_up_after_three_bad_decisions(tmp_path: Path) -> None:
    script = scenario(
        planner=GOOD_PLAN,
        executor={"s1": answer("the result")},
        replanner=[{"attempts": [BAD_REVISION, BAD_REVISION, {"raw": "hmm"}]}],
    )
    # The end decision as JSON: as text (the default) any reply is an answer or more steps.
    r = run(tmp_path, script, plan_format="json")

    assert r.state["status"] == "failed"
    assert r.state["reason"] == (
        "replanner output invalid after 3 attempts: no ReplanDecision was returned; "
        "reply with the ReplanDecision tool"
    )
    assert r.calls("replanner") == 3
    assert "- s1 (Do s1.): the result" in r.state["response"]


# (e) "continue" with nothing left to run -------------------------------------------------------


def test_continue_with_no_runnable_step_is_rejected_and_retried(tmp_path: Path) -> None:
    script = scenario(
        planner=GOOD_PLAN,
        executor={"s1": answer("ok")},
        replanner=[{"attempts": [{"action": "continue", "reason": "go on"}, FINISH]}],
    )
    # The end decision as JSON: as text (the default) any reply is an answer or more steps.
    r = run(tmp_path, script, plan_format="json")

    assert r.state["status"] == "done"
    assert r.calls("replanner") == 2
    assert r.of_kind("reviewed") == []  # the rejected "continue" was never acted on
    assert (
        "'continue' is not possible: no step can run (every step has run); replan or finish"
        in r.log.texts("replanner")[1]
    )


def test_continue_past_a_failed_dependency_is_rejected_and_the_step_never_runs(
    tmp_path: Path,
) -> None:
    """s1 failed; s2 needs it. "continue" would run s2 on a failed result: it is refused
    (a step is ready only when its dependencies are done, not merely settled)."""
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={"s1": [{"error": "server", "message": "down"}], "s2": answer("two")},
        replanner=[{"attempts": [{"action": "continue", "reason": "go on"}, FINISH]}],
    )
    r = run(tmp_path, script, plan_format="json")

    assert r.results["s1"]["status"] == "failed"
    assert "s2" not in r.started()
    assert (
        "'continue' is not possible: no step can run (steps ['s2'] wait on failed steps)"
        in r.log.texts("replanner")[1]
    )


# (f) a scenario bug stops the run --------------------------------------------------------------


def test_missing_executor_turn_fails_the_run_naming_scenario_role_and_step(
    tmp_path: Path,
) -> None:
    script = scenario(
        planner=GOOD_PLAN,
        executor={"s1": [{"tool_calls": [{"name": "calculator", "args": {"expression": "1"}}]}]},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "failed"
    reason = r.state["reason"]
    assert "scenario 'unit_routing'" in reason
    assert "executor turn 2" in reason
    assert "step 's1'" in reason
    assert r.calls("replanner") == 0  # a scenario bug is not something to replan around
    assert r.of_kind("finished")[-1]["status"] == "failed"


# (g) periodic review ---------------------------------------------------------------------------


def test_replan_every_two_completed_steps(tmp_path: Path) -> None:
    chain = plan(("s1", []), ("s2", ["s1"]), ("s3", ["s2"]), ("s4", ["s3"]))
    script = scenario(
        planner=chain,
        executor={i: answer(f"{i} done") for i in ("s1", "s2", "s3", "s4")},
        replanner=[{"action": "continue", "reason": "on track"}, FINISH],
    )
    r = run(tmp_path, script, replan_every=2)

    assert r.calls("replanner") == 2
    assert [h["action"] for h in r.state["history"]] == ["continue", "finish"]
    kinds = [(e["event"], e.get("step_id")) for e in r.events if e["event"] != "plan"]
    review = kinds.index(("reviewed", None))
    assert [k for k in kinds[:review] if k[0] == "step_finished"] == [
        ("step_finished", "s1"),
        ("step_finished", "s2"),
    ]
    assert "periodic review of progress" in r.log.texts("replanner")[0]
    assert r.started() == ["s1", "s2", "s3", "s4"], "after the review, the rest runs"


def test_without_replan_every_the_replanner_is_called_once_at_the_end(tmp_path: Path) -> None:
    chain = plan(("s1", []), ("s2", ["s1"]), ("s3", ["s2"]), ("s4", ["s3"]))
    script = scenario(
        planner=chain,
        executor={i: answer(f"{i} done") for i in ("s1", "s2", "s3", "s4")},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.calls("replanner") == 1
    assert r.started() == ["s1", "s2", "s3", "s4"]


# (h) provider quota errors ---------------------------------------------------------------------


def _quota_run(tmp_path: Path, message: str) -> Run:
    """s1's executor model answers with a 429 saying `message`; s2 waits on s1."""
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={"s1": [{"error": "quota", "message": message}]},
        replanner=[FINISH],
    )
    return run(tmp_path, script)


def test_quota_error_fails_the_step_and_calls_the_replanner(tmp_path: Path) -> None:
    r = _quota_run(tmp_path, "You exceeded your current quota")

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == "quota error from the executor model: You exceeded your current quota"
    assert r.state["replanner_calls"] == 1
    assert replanner_reason("s1", "failed", "quota error") in r.log.texts("replanner")[0]
    assert r.state["status"] == "done"


def test_a_429_without_quota_in_its_message_is_a_quota_error(tmp_path: Path) -> None:
    """Providers word a rate limit many ways ("Too many requests"): the 429 status alone makes
    it a quota error for the replanner, not a generic model error."""
    r = _quota_run(tmp_path, "Too many requests, slow down")

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == "quota error from the executor model: Too many requests, slow down"


# (i) completed steps stay done -----------------------------------------------------------------


def test_a_replan_never_reruns_completed_steps(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"]), ("s3", ["s2"])),
        executor={
            "s1": answer("s1 done"),
            "s2": calc("1/0"),
            "s2#2": answer("s2 done"),
            "s3": answer("s3 done"),
            "s4": answer("s4 done"),
        },
        replanner=[
            {
                "action": "replan",
                "reason": "retry s2, then s3 and a check",
                "steps": [
                    {"id": "s2", "description": "Retry.", "depends_on": ["s1"]},
                    {"id": "s3", "description": "Do s3.", "depends_on": ["s2"]},
                    {"id": "s4", "description": "Check.", "depends_on": ["s1", "s3"]},
                ],
            },
            FINISH,
        ],
        faults=[{"step": "s2", "tool": "calculator", "kind": "raise"}],
    )
    r = run(tmp_path, script)

    assert Counter(r.started()) == {"s1": 1, "s2": 2, "s3": 1, "s4": 1}
    assert [s["id"] for s in r.state["plan"]] == ["s1", "s2", "s3", "s4"]
    assert r.state["results"]["s1"]["attempts"] == 1
    assert r.state["status"] == "done"


# (j) tool call cap -----------------------------------------------------------------------------


def test_tool_call_cap_fails_the_step(tmp_path: Path) -> None:
    three_calls = [
        {"tool_calls": [{"name": "calculator", "args": {"expression": f"{n} + 1"}}]}
        for n in range(3)
    ]
    script = scenario(
        planner=GOOD_PLAN,
        executor={"s1": [*three_calls, {"content": "never reached"}]},
        replanner=[FINISH],
    )
    r = run(tmp_path, script, max_tool_calls_per_step=2)

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == "tool call cap reached: a step may make 2 tool calls"
    assert [c["ok"] for c in s1["tool_calls"]] == [True, True, False]
    assert r.state["replanner_calls"] == 1


def test_flag_surprise_does_not_count_toward_the_tool_call_cap(tmp_path: Path) -> None:
    script = scenario(
        planner=GOOD_PLAN,
        executor={
            "s1": [
                {"tool_calls": [{"name": "calculator", "args": {"expression": "1 + 1"}}]},
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "two?"}}]},
                {"content": "it is {last_tool_result}"},
            ]
        },
        replanner=[FINISH],
    )
    r = run(tmp_path, script, max_tool_calls_per_step=1)

    s1 = r.state["results"]["s1"]
    assert (s1["status"], s1["result"], s1["surprise"]) == ("done", "it is 2", "two?")
    assert [c["name"] for c in s1["tool_calls"]] == ["calculator"]


def test_a_step_given_no_tools_may_call_none(tmp_path: Path) -> None:
    """A step's `tools: []` means no tools, not every tool of the run: a call the model makes
    anyway is refused and fails the step, and the tool never runs."""
    script = scenario(
        tools=["calculator", "write_file"],
        planner={"steps": [{"id": "s1", "description": "Think.", "tools": []}]},
        executor={"s1": [*calc("1 + 1")[:1], {"content": "never reached"}]},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    s1 = r.state["results"]["s1"]
    assert s1["status"] == "failed"
    assert "refused: tool 'calculator' is not allowed in step 's1'" in s1["error"], s1["error"]
    assert [c["ok"] for c in s1["tool_calls"]] == [False]
    assert r.state["replanner_calls"] == 1


# runs on a thread ------------------------------------------------------------------------------


def test_a_second_goal_on_a_finished_thread_starts_a_fresh_run(tmp_path: Path) -> None:
    # LangGraph Studio (and any SDK client) may send a new goal to a thread that already holds
    # a finished run. Step ids repeat between runs ("s1"), so nothing may carry over.
    path = tmp_path / "unit_thread.json"
    script = scenario(
        name="unit_thread",
        planner=GOOD_PLAN,
        executor={"s1": answer("ok")},
        replanner=[FINISH],
    )
    path.write_text(json.dumps(script), encoding="utf-8")
    spec = f"scripted:{path}"
    ctx = Context.every_role(spec, tools=["calculator"], workspace=str(tmp_path / "ws"))
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "studio-thread"}}

    def started_by(goal: str) -> list[str]:
        stream = graph.stream(
            {"goal": goal}, config=config, context=ctx, stream_mode="custom", durability="sync"
        )
        return [e["step_id"] for e in stream if e["event"] == "step_started"]

    assert started_by("First question.") == ["s1"]
    first = graph.get_state(config).values
    assert started_by("A different question.") == ["s1"]  # run again, not taken as done
    second = graph.get_state(config).values

    assert second["goal"] == "A different question."
    assert second["results"]["s1"]["started_at"] > first["results"]["s1"]["finished_at"]
    assert len(second["history"]) == 1  # this run's decisions only
    assert second["usage"]["planner"]["calls"] == 1  # this run's usage only
    assert second["status"] == "done"


def test_a_second_run_on_a_thread_has_its_own_replans_and_a_failed_start_keeps_no_plan(
    tmp_path: Path,
) -> None:
    """max_replans bounds one run: a thread's earlier revisions must not count against the next
    goal's. A goal refused before planning leaves no earlier run's plan behind as its own."""
    path = tmp_path / "unit_thread.json"
    script = scenario(
        name="unit_thread",
        planner=GOOD_PLAN,
        executor={
            "s1": [
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "odd"}}]},
                {"content": "odd data"},
            ],
            "s2": answer("fixed"),
        },
        replanner=[
            {"action": "replan", "reason": "fix", "steps": [{"id": "s2", "description": "Fix."}]},
            FINISH,
        ],
    )
    path.write_text(json.dumps(script), encoding="utf-8")
    ctx = Context.every_role(
        f"scripted:{path}", tools=["calculator"], workspace=str(tmp_path / "ws"), max_replans=1
    )
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "studio-thread"}}

    def run_goal(goal: str) -> dict[str, Any]:
        for _ in graph.stream({"goal": goal}, config=config, context=ctx, durability="sync"):
            pass
        return graph.get_state(config).values

    for goal in ("First question.", "Second question."):
        state = run_goal(goal)
        assert state["status"] == "done", state.get("reason")
        assert (state["replans"], state["replanner_calls"]) == (1, 2)
    refused = run_goal("  ")
    assert refused["status"] == "failed"
    assert refused["reason"] == "the input has no goal: pass {'goal': '...'}"
    assert refused["plan"] == [] and refused["results"] == {}


def test_unknown_tool_fails_before_any_model_is_paid_for(tmp_path: Path) -> None:
    script = scenario(planner=plan(("s1", [])), executor={"s1": answer("x")}, replanner=[FINISH])

    r = run(tmp_path, script, tools=["calculator", "nope"])

    assert r.state["status"] == "failed"
    assert "'nope'" in r.state["reason"] and "calculator" in r.state["reason"]
    assert r.calls("planner") == 0 and r.log.calls == []


def test_flag_surprise_without_a_reason_still_reaches_the_replanner(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", []), ("s2", ["s1"])),
        executor={
            "s1": [
                {"tool_calls": [{"name": "flag_surprise", "args": {}}]},  # malformed: no reason
                {"content": "odd"},
            ],
            "s2": answer("ok"),
        },
        replanner=[{"action": "continue", "reason": "fine"}, FINISH],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done"
    assert r.state["results"]["s1"]["surprise"] == "the executor flagged a surprise"
    assert r.calls("replanner") == 2


def test_a_failure_in_a_batch_cut_by_ctrl_c_still_goes_to_the_replanner(tmp_path: Path) -> None:
    """Ctrl-C cuts the batch (no new step), but a failure among the steps in flight is news:
    the replanner must see it before any other step starts."""
    from langchain_core.callbacks import BaseCallbackHandler

    from graphs.scheduler import STOP_LAUNCHING

    class CtrlCWhenAStarts(BaseCallbackHandler):
        def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs):
            if (metadata or {}).get("planexec_step") == "a":
                STOP_LAUNCHING.set()

    script = scenario(
        planner=plan(("a", []), ("b", []), ("c", ["b"])),
        executor={
            # b finishes first, while Ctrl-C is set: the batch is cut. Then a fails.
            "a": [
                {
                    "tool_calls": [{"name": "calculator", "args": {"expression": "1"}}],
                    "latency": 0.3,
                }
            ],
            "b": [{"content": "b done", "latency": 0.02}],
            "c": answer("c done"),
        },
        replanner=[FINISH],
        faults=[{"step": "a", "tool": "calculator", "kind": "raise", "message": "boom"}],
    )
    path = write_scenario(tmp_path, script)
    ctx = Context.every_role(f"scripted:{path}", tools=["calculator"])
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "cut"}, "callbacks": [CtrlCWhenAStarts()]}
    try:
        graph.invoke({"goal": "g"}, config, context=ctx)
    finally:
        STOP_LAUNCHING.clear()
    state = graph.get_state(config).values

    assert state["results"]["a"]["status"] == "failed"
    assert "c" not in state["results"], "no step may start before the replanner saw a's failure"
    assert state["usage"]["replanner"]["calls"] == 1
    assert state["status"] == "done"


def test_a_fault_limited_to_the_first_attempt_lets_the_retry_use_the_tool(tmp_path: Path) -> None:
    script = scenario(
        planner=plan(("s1", [])),
        executor={"s1": calc("6 * 7"), "s1#2": calc("6 * 7")},
        replanner=[
            {
                "action": "replan",
                "reason": "retry",
                "steps": [{"id": "s1", "description": "again"}],
            },
            FINISH,
        ],
        faults=[{"step": "s1", "tool": "calculator", "kind": "raise", "attempt": 1}],
    )
    r = run(tmp_path, script)

    first, second = r.of_kind("step_finished")
    assert first["status"] == "failed" and second["status"] == "done"
    assert r.state["results"]["s1"]["result"] == "42"


# routes recorded in the state ------------------------------------------------------------------


def test_an_edited_empty_route_ends_the_run_and_a_foreign_command_is_refused() -> None:
    """A state edit may leave `route` empty or null: that ends the run rather than naming a
    node "". A Command meant for a parent graph or a resume cannot be recorded as a route."""
    assert follow_route({"route": ""}) == END
    assert follow_route({"route": None}) == END
    assert follow_route({"route": "executor"}) == "executor"

    def parent(state: Any, runtime: Any) -> Command:
        return Command(goto="executor", graph=Command.PARENT)

    def resume(state: Any, runtime: Any) -> Command:
        return Command(goto="executor", resume="yes")

    for node in (parent, resume):
        with pytest.raises(TypeError, match="a routed node must return"):
            recorded_route(node)({}, None)
    ok = recorded_route(lambda state, runtime: Command(goto="executor", update={"replans": 1}))
    assert ok({}, None) == {"replans": 1, "route": "executor"}


def test_a_step_retried_after_a_replan_is_not_settled_by_its_failed_attempt() -> None:
    """The retry (attempt 2) still has to run: the approval request, the replanner's progress
    and the lean end all list it as remaining."""
    from graphs.state import remaining_steps, settled

    results = {"s1": {"id": "s1", "status": "failed", "attempts": 1}}
    retry = {"id": "s1", "description": "Do s1.", "attempt": 2}
    assert not settled(retry, results)
    assert remaining_steps([retry], results) == [retry]
    assert settled({**retry, "attempt": 1}, results)


def test_a_stop_asked_before_any_step_started_fails_the_node_and_the_run_resumes_whole(
    tmp_path: Path,
) -> None:
    """Ctrl-C or SIGTERM (STOP_LAUNCHING) before the executor started a step: the node must
    fail, writing nothing, so the checkpoint still points at the executor. Returning an empty
    update instead would loop executor -> executor or end the run with nothing run."""
    from graphs.scheduler import STOP_LAUNCHING

    script = {
        "name": "stop_before",
        "goal": "g",
        "tools": [],
        "planner": {"steps": [{"id": "s1", "description": "Say one."}]},
        "executor": {"s1": [{"content": "one"}]},
        "replanner": [{"action": "finish", "reason": "done", "response": "one"}],
    }
    ctx = Context.every_role(
        f"scripted:{write_scenario(tmp_path, script)}", tools=[], stream_plan=False
    )
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    STOP_LAUNCHING.set()
    try:
        with pytest.raises(RuntimeError, match="asked to stop before any step started"):
            graph.invoke({"goal": "g"}, config, context=ctx)
    finally:
        STOP_LAUNCHING.clear()
    assert graph.get_state(config).next == ("executor",)
    state = graph.invoke(None, config, context=ctx)
    assert state["status"] == "done" and state["results"]["s1"]["result"] == "one"
    assert state["results"]["s1"]["executions"] == 1


def test_a_transient_model_error_is_raised_for_a_retry_only_while_attempts_remain() -> None:
    """The node raises a passing error (429, 5xx, timeout) for LangGraph's RetryPolicy while
    attempts remain, and ends the run cleanly on the last; with no attempt number to go by
    (no execution info) it ends the run: raising then would crash it."""
    from types import SimpleNamespace

    from graphs.retries import MODEL_NODE_ATTEMPTS, retry_node

    def at(attempt: int) -> SimpleNamespace:
        return SimpleNamespace(execution_info=SimpleNamespace(node_attempt=attempt))

    transient, lasting = TimeoutError("slow"), ValueError("bad request")
    assert retry_node(transient, at(1)) and retry_node(transient, at(MODEL_NODE_ATTEMPTS - 1))
    assert not retry_node(transient, at(MODEL_NODE_ATTEMPTS))
    assert not retry_node(lasting, at(1))
    assert not retry_node(transient, SimpleNamespace())


def test_a_summary_says_why_the_run_ended_at_the_replan_limit() -> None:
    """Checkpoints are chosen from their summaries (history, Studio's time travel)."""
    from graphs.summaries import describe

    for status in ("failed", "rejected", "replan_limit"):
        update = {"status": status, "reason": "3 replans used", "history": [{"action": "replan"}]}
        assert describe("replanner", update) == f"replanner: run {status}: 3 replans used"
