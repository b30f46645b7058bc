"""Tool steps: plan steps that are one tool call, run with no model (graphs/tool_step.py).

Runs go through the real graph with scripted models; the scenario's executor has no turns for
a tool step, so a model call for one would fail the run loudly.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import StructuredTool, tool

from app.context import Context
from graphs.schemas import PlanStep, plan_problems
from graphs.tool_args import RefError, resolve_args
from graphs.tool_step import describe_tools, run_tool_step, tools_for_run
from tests.scripted_runs import Run, replanner_reason, run_scenario, write_scenario
from tools.step_context import StepIdentity, ToolCallIdentity, current_tool_call, idempotency_key

FINISH = {"action": "finish", "reason": "done", "response": "The answer."}


def scenario(**parts: Any) -> dict[str, Any]:
    return {"name": "unit_tool_steps", "goal": "Test goal.", "tools": ["calculator"], **parts}


def calc_step(step_id: str, expression: str, *depends_on: str) -> dict[str, Any]:
    return {
        "id": step_id,
        "description": f"Compute {step_id}.",
        "depends_on": list(depends_on),
        "tool": "calculator",
        "args": {"expression": expression},
    }


def run(tmp_path: Path, script: dict[str, Any], **context: Any) -> Run:
    return run_scenario(tmp_path, write_scenario(tmp_path, script), **context)


def calculator_tools(tmp_path: Path) -> dict[str, Any]:
    ctx = Context.of(tools=["calculator", "sql_query"], workspace=str(tmp_path / "ws"))
    return {t.name: t for t in tools_for_run(ctx)}


# running ---------------------------------------------------------------------------------------


def test_tool_steps_run_without_a_model_and_fill_references(tmp_path: Path) -> None:
    script = scenario(
        planner={
            "steps": [
                {"id": "s1", "description": "Report the totals as JSON."},
                calc_step("s2", "${s1.rows.1.total} * 10", "s1"),
                calc_step("s3", "${s2} + 1", "s2"),
            ]
        },
        executor={"s1": [{"content": '{"rows": [{"total": 1}, {"total": 7}]}'}]},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done", r.state.get("reason")
    assert r.results["s2"]["result"] == "70"
    assert r.results["s3"]["result"] == "71"
    (call,) = r.results["s3"]["tool_calls"]
    assert call.pop("started_at") <= call.pop("finished_at")  # timed, for the run report
    assert call == {
        "name": "calculator",
        "args": {"expression": "70 + 1"},
        "ok": True,
        "output": "71",
        "empty": False,
    }
    # Only s1 asked the executor model; the tool steps made no model call.
    assert r.calls("executor") == 1
    assert {c["step"] for c in r.log.calls if c["role"] == "executor"} == {"s1"}


def test_a_plan_of_tool_steps_makes_no_executor_call(tmp_path: Path) -> None:
    script = scenario(
        planner={"steps": [calc_step("a", "2 + 3"), calc_step("b", "4 * 5")]},
        executor={},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done", r.state.get("reason")
    assert "executor" not in r.state["usage"]
    assert [r.results["a"]["result"], r.results["b"]["result"]] == ["5", "20"]


def test_empty_tool_output_is_a_surprise_for_the_replanner(tmp_path: Path) -> None:
    script = scenario(
        planner={"steps": [calc_step("s1", "1 + 1"), calc_step("s2", "${s1} * 2", "s1")]},
        executor={},
        replanner=[FINISH],
        faults=[{"step": "s1", "tool": "calculator", "kind": "empty"}],
    )
    r = run(tmp_path, script)

    assert r.results["s1"]["status"] == "done"
    assert r.results["s1"]["surprise"].startswith("calculator returned an empty result")
    assert "s2" not in r.started()  # the replanner was asked before anything else ran
    assert "reported a surprise" in r.log.texts("replanner")[0]


def shop_database(tmp_path: Path) -> Path:
    """A real SQLite file with three orders, none of them over 100."""
    path = tmp_path / "shop.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    conn.executemany("INSERT INTO orders VALUES (?, ?)", [(1, 9.5), (2, 20.0), (3, 5.25)])
    conn.commit()
    conn.close()
    return path


def test_an_empty_sql_result_is_a_surprise_for_the_replanner(tmp_path: Path) -> None:
    """sql_query's reply to no rows is a sentence, not empty text: only its artifact says the
    result is empty, and the replanner must still hear of it before a dependent step runs."""
    query = "SELECT id, total FROM orders WHERE total > 100"
    script = scenario(
        tools=["sql_query", "calculator"],
        planner={
            "steps": [
                {"id": "s1", "tool": "sql_query", "args": {"query": query}},
                calc_step("s2", "1 + 1", "s1"),
            ]
        },
        executor={},
        replanner=[FINISH],
    )
    r = run(tmp_path, script, sql_database=str(shop_database(tmp_path)))

    s1 = r.results["s1"]
    assert s1["status"] == "done"
    assert s1["result"] == "Query returned 0 rows (columns: id, total)."
    assert s1["tool_calls"][0]["empty"] is True
    assert (
        s1["surprise"] == f"sql_query returned an empty result for {json.dumps({'query': query})}"
    )
    assert "s2" not in r.started()  # the replanner was asked before anything else ran
    assert (
        replanner_reason("s1", "reported a surprise", "sql_query returned an empty result")
        in (r.log.texts("replanner")[0])
    )


def test_a_sql_result_with_rows_is_no_surprise(tmp_path: Path) -> None:
    script = scenario(
        tools=["sql_query"],
        planner={
            "steps": [
                {
                    "id": "s1",
                    "tool": "sql_query",
                    "args": {"query": "SELECT count(*) AS n FROM orders"},
                }
            ]
        },
        executor={},
        replanner=[FINISH],
    )
    r = run(tmp_path, script, sql_database=str(shop_database(tmp_path)))

    assert r.results["s1"]["result"] == "n\n3"
    assert r.results["s1"]["surprise"] == ""
    assert r.state["status"] == "done"


def test_tool_error_fails_the_step_and_calls_the_replanner(tmp_path: Path) -> None:
    script = scenario(
        planner={"steps": [calc_step("s1", "1 + 1")]},
        executor={},
        replanner=[FINISH],
        faults=[{"step": "s1", "tool": "calculator", "kind": "raise", "message": "disk on fire"}],
    )
    r = run(tmp_path, script)

    assert r.results["s1"]["status"] == "failed"
    assert r.results["s1"]["error"] == "tool calculator failed: disk on fire"
    reason = replanner_reason("s1", "failed", "tool calculator failed: disk on fire")
    assert reason in r.log.texts("replanner")[0]


def test_unresolvable_reference_fails_the_step(tmp_path: Path) -> None:
    script = scenario(
        planner={
            "steps": [
                {"id": "s1", "description": "Say hi."},
                calc_step("s2", "${s1.total} + 1", "s1"),
            ]
        },
        executor={"s1": [{"content": "hi, not JSON"}]},
        replanner=[FINISH],
    )
    r = run(tmp_path, script)

    assert r.results["s2"]["status"] == "failed"
    assert "follows a path into s1's result, which is not JSON" in r.results["s2"]["error"]
    assert r.results["s2"]["error"].startswith("arguments of calculator: "), "a step failure"
    assert r.calls("replanner") == 1, "not a crash: the replanner sees it like any failure"


def test_a_tool_step_runs_inside_its_step_and_tool_call_identity() -> None:
    seen: list[Any] = []

    @tool
    def record(note: str) -> str:
        """Record the running tool call."""
        seen.append((current_tool_call(), idempotency_key(), note))
        return "ok"

    step = {
        "id": "w1",
        "description": "Write.",
        "attempt": 2,
        "tool": "record",
        "args": {"note": "${d1}"},
    }
    outcome = run_tool_step(step, {"d1": {"result": "from d1"}}, [record], run_id="run-9")

    assert outcome.result["status"] == "done" and outcome.result["result"] == "ok"
    expected = ToolCallIdentity(StepIdentity("run-9", "w1", 2), 0)
    assert seen == [(expected, expected.idempotency_key, "from d1")]


# plan-time validation --------------------------------------------------------------------------


def test_tool_step_problems_name_the_step(tmp_path: Path) -> None:
    tools = calculator_tools(tmp_path)
    steps = [
        PlanStep(id="s1", description="x", tool="http_get", args={"url": "http://x"}),
        PlanStep(id="s2", description="x", tool="calculator", args={"expr": "1"}),
        PlanStep(id="s3", description="x", tool="calculator", args={}),
        PlanStep(id="s4", description="x", tool="calculator", args={"expression": "${s1} + 1"}),
        PlanStep(id="s5", description="x", tool="sql_query", args={"query": 5}),
        PlanStep(id="s6", description="x", args={"expression": "1"}),
        PlanStep(id="s7"),  # a model step must say what to do; a tool step need not
        PlanStep(id="s8", tool="calculator", args={"expression": "1"}),
    ]
    assert plan_problems(steps, max_steps=12, tools=tools) == [
        "step 's1' uses tool 'http_get', which this run may not use (tools: calculator, sql_query)",
        "step 's2' (tool calculator) has unknown argument 'expr'; its arguments: expression",
        "step 's2' (tool calculator) is missing required argument 'expression'",
        "step 's3' (tool calculator) is missing required argument 'expression'",
        "step 's4' refers to '${s1}', but 's1' is not in its depends_on (none); add it there, "
        "or write $${ for a literal ${",
        "step 's5' (tool sql_query) argument query: Input should be a valid string",
        "step 's6' has args but no tool; give the tool, or no args",
        "step 's7' has no description; say what the executor must do",
    ]


def test_a_reference_excuses_only_its_own_value_and_names_only_declared_dependencies(
    tmp_path: Path,
) -> None:
    """A value holding a reference is known only at run time, so its type is not checked; the
    other arguments still are, a required one is still required, and a step with dependencies
    may still refer only to those (the scheduler guarantees no other result exists yet)."""
    ctx = Context.of(tools=["calculator", "write_file"], workspace=str(tmp_path / "ws"))
    tools = {t.name: t for t in tools_for_run(ctx)}
    s1, s2 = (PlanStep(id=i, tool="calculator", args={"expression": "1 + 1"}) for i in ("s1", "s2"))

    def write(step_id: str, args: dict[str, Any]) -> PlanStep:
        return PlanStep(id=step_id, depends_on=["s1"], tool="write_file", args=args)

    steps = [
        s1,
        s2,
        PlanStep(id="s3", depends_on=["s1"], tool="calculator", args={"expression": "${s1}*${s2}"}),
        write("s4", {"content": "${s1}"}),
        write("s5", {"path": "out.txt", "content": "${s1}", "append": [1]}),
        write("s6", {"path": "${s1}", "content": 1}),
        write("s7", {"path": "a", "content": "${s1}"}),
    ]
    assert plan_problems(steps, max_steps=12, tools=tools) == [
        "step 's3' refers to '${s2}', but 's2' is not in its depends_on (s1); add it there, "
        "or write $${ for a literal ${",
        "step 's4' (tool write_file) is missing required argument 'path'",
        "step 's5' (tool write_file) argument append: Input should be a valid boolean",
        "step 's6' (tool write_file) argument content: Input should be a valid string",
    ]


def test_a_tool_steps_tools_list_may_name_only_its_own_tool(tmp_path: Path) -> None:
    """A tool step calls one tool; a longer list would add tools to what the plan uses, which
    is what a revision is allowed to use (graphs/schemas.revision_tool_problems)."""
    ctx = Context.of(tools=["calculator", "write_file"], workspace=str(tmp_path / "ws"))
    tools = {t.name: t for t in tools_for_run(ctx)}

    def tool_step(names: list[str] | None) -> PlanStep:
        return PlanStep(id="s1", tool="calculator", args={"expression": "1"}, tools=names)

    assert plan_problems([tool_step(None)], max_steps=12, tools=tools) == []
    assert plan_problems([tool_step(["calculator"])], max_steps=12, tools=tools) == []
    for names in (["calculator", "write_file"], [], ["write_file"]):
        assert plan_problems([tool_step(names)], max_steps=12, tools=tools) == [
            "step 's1' calls tool 'calculator', so its tools list must be ['calculator'] or "
            "left out"
        ], names


def test_references_pass_type_checks_and_escapes_are_not_references(tmp_path: Path) -> None:
    tools = calculator_tools(tmp_path)
    steps = [
        PlanStep(id="s1", description="x", tool="calculator", args={"expression": "1"}),
        PlanStep(
            id="s2",
            description="x",
            depends_on=["s1"],
            tool="sql_query",
            args={"query": "SELECT '$${HOME}', ${s1}"},
        ),
    ]
    assert plan_problems(steps, max_steps=12, tools=tools) == []
    # Without the run's tools a tool step cannot be checked, so it is refused.
    assert plan_problems(steps[:1], max_steps=12)[0].startswith(
        "step 's1' uses tool 'calculator', which this run may not use"
    )


def test_a_reference_excuses_every_branch_of_a_union_and_names_a_step_exactly(
    tmp_path: Path,
) -> None:
    """A whole reference in a union-typed argument fails each branch (errors at `n.int`,
    `n.list[int]`): all of them are the reference's, known only at run time. `${}` is named as
    empty, not as a step missing from depends_on; `${s10}` is not a reference to s1."""

    def pick(n: int | list[int]) -> str:
        """Pick."""
        return str(n)

    tools = {**calculator_tools(tmp_path), "pick": StructuredTool.from_function(pick)}
    steps = [
        PlanStep(id="s1", description="Count."),
        PlanStep(id="s2", tool="pick", args={"n": "${s1}"}, depends_on=["s1"]),
        PlanStep(id="s3", tool="calculator", args={"expression": "${} + 1"}),
        # s1 is a dependency, but ${s10} names another step: an id is matched whole.
        PlanStep(id="s4", tool="calculator", args={"expression": "${s10}"}, depends_on=["s1"]),
    ]
    assert plan_problems(steps, max_steps=12, tools=tools) == [
        "step 's3' has an empty reference '${}'",
        "step 's4' refers to '${s10}', but 's10' is not in its depends_on (s1); add it there, "
        "or write $${ for a literal ${",
    ]


def test_a_reference_excuses_a_whole_schema_check_that_reads_it(tmp_path: Path) -> None:
    """A schema validator over the whole arguments (its errors are at no field) sees the
    reference's text, not its value: its error is the reference's too. A literal that fails
    it is still refused."""
    from pydantic import BaseModel, model_validator

    class Pair(BaseModel):
        low: int
        high: int

        @model_validator(mode="before")
        @classmethod
        def ordered(cls, data: dict) -> dict:
            if not all(isinstance(data.get(k), int) for k in ("low", "high")):
                raise ValueError("low and high must be numbers")
            if data["low"] > data["high"]:
                raise ValueError("low must not be above high")
            return data

    def span(low: int, high: int) -> str:
        """Span."""
        return str(high - low)

    tool = StructuredTool.from_function(span, args_schema=Pair)
    tools = {**calculator_tools(tmp_path), "span": tool}
    steps = [
        PlanStep(id="s1", description="Count."),
        PlanStep(id="s2", tool="span", args={"low": "${s1}", "high": 9}, depends_on=["s1"]),
    ]
    assert plan_problems(steps, max_steps=12, tools=tools) == []
    bad = [PlanStep(id="s1", tool="span", args={"low": 5, "high": 1})]
    (problem,) = plan_problems(bad, max_steps=12, tools=tools)
    assert "low must not be above high" in problem


def test_invalid_tool_steps_go_back_to_the_planner(tmp_path: Path) -> None:
    bad = {"steps": [calc_step("s1", "${s9} + 1")]}
    good = {"steps": [calc_step("s1", "1 + 1")]}
    script = scenario(planner={"attempts": [bad, good]}, executor={}, replanner=[FINISH])
    r = run(tmp_path, script)

    assert r.state["status"] == "done", r.state.get("reason")
    assert r.calls("planner") == 2
    assert (
        "step 's1' refers to '${s9}', but 's9' is not in its depends_on"
        in (r.log.texts("planner")[1])
    )


def test_the_planner_is_told_each_tools_arguments(tmp_path: Path) -> None:
    script = scenario(planner={"steps": [calc_step("s1", "1")]}, executor={}, replanner=[FINISH])
    r = run(tmp_path, script)
    assert "- calculator(expression: string): Evaluate an arithmetic" in r.log.texts("planner")[0]


def test_a_long_tool_description_is_cut_for_the_planner() -> None:
    """Every planner call pays for these lines: a description's first sentence is cut to the
    limit at a word boundary."""
    wordy = StructuredTool.from_function(
        lambda q: q, name="wordy", description="Look " + "things up " * 12 + "carefully."
    )
    (line,) = describe_tools([wordy], description_chars=80).splitlines()
    text = line.split("): ", 1)[1]
    assert len(text) <= 80 and text.endswith("up...")


# references ------------------------------------------------------------------------------------


def test_resolve_args_keeps_types_of_whole_references_and_formats_embedded_ones() -> None:
    results = {"s1": '{"rows": [{"n": 3, "tags": ["a"]}]}', "s1.x": "dotted id"}
    args = {
        "n": "${s1.rows.0.n}",
        "tags": "${s1.rows.0.tags}",
        "text": "n=${s1.rows.0.n} tags=${s1.rows.0.tags} last=${s1.rows.-1.n}",
        "raw": "${s1}",
        "dotted": "${s1.x}",
        "literal": "$${s1} stays",
        "nested": [{"deep": "${s1.rows.0.n}"}],
    }
    assert resolve_args(args, results) == {
        "n": 3,
        "tags": ["a"],
        "text": 'n=3 tags=["a"] last=3',
        "raw": results["s1"],
        "dotted": "dotted id",
        "literal": "${s1} stays",
        "nested": [{"deep": 3}],
    }


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("${s3}", "names no step this one depends on"),
        ("${s1.rows.5}", "s1's result has nothing at 's1.rows.5'"),
        ("${s1.nope}", "s1's result has nothing at 's1.nope'"),
        ("${s1.rows.0}", "s1's result has nothing at 's1.rows.0'"),  # one past the end
        # Neither is an index (int() raised ValueError past the RefError handler).
        ("${s1.list.--0}", "s1's result has nothing at 's1.list.--0'"),
        ("${s1.list.\u00b2}", "s1's result has nothing at 's1.list.\u00b2'"),
        ("${s2.0}", "s2's result is JSON nested too deeply"),
    ],
)
def test_unresolvable_references_raise_with_the_reference(ref: str, message: str) -> None:
    results = {"s1": '{"rows": [], "list": [5]}', "s2": "[" * 5000 + "]" * 5000}
    with pytest.raises(RefError, match=message.replace(".", r"\.")):
        resolve_args({"x": ref}, results)


def test_arguments_nested_too_deeply_are_a_reference_error() -> None:
    deep: dict = {}
    inner = deep
    for _ in range(5000):
        inner["k"] = {}
        inner = inner["k"]
    with pytest.raises(RefError, match="nested too deeply"):
        resolve_args(deep, {})


def test_resolved_arguments_are_bounded() -> None:
    with pytest.raises(RefError, match="the limit is"):
        resolve_args({"x": "${s1} ${s1}"}, {"s1": "x" * 150_000})
    # Counted as they are sent, JSON escapes included: 60,000 characters that escape to six.
    with pytest.raises(RefError, match="the limit is"):
        resolve_args({"x": "${s1}"}, {"s1": "\x01" * 60_000})


def test_many_references_to_a_long_result_are_refused_before_they_are_joined() -> None:
    """A revision (replanner output, untrusted) may repeat a reference: 300 copies of a 1 MB
    result were joined into 300 MB before the size was checked (a server killed for memory)."""
    import tracemalloc

    results = {"s1": "x" * 1_000_000, "s2": json.dumps({"rows": ["y" * 100_000] * 10})}
    for args in ({"x": "${s1}" * 300}, {"x": "${s2.rows.0} " * 300}, {"x": ["${s1}"] * 300}):
        tracemalloc.start()
        try:
            with pytest.raises(RefError, match="the limit is 200000"):
                resolve_args(args, results)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 20_000_000, f"{peak} bytes held for {str(args)[:30]}"


def test_json_schema_tools_are_checked_by_name_and_required(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    mcp_like = StructuredTool(
        name="search", description="Search.", args_schema=schema, func=lambda q: q
    )
    steps = [PlanStep(id="s1", description="x", tool="search", args={"z": 1})]
    assert plan_problems(steps, max_steps=12, tools={"search": mcp_like}) == [
        "step 's1' (tool search) has unknown argument 'z'; its arguments: q",
        "step 's1' (tool search) is missing required argument 'q'",
    ]


@pytest.mark.parametrize(
    "widen",
    [
        {"id": "s3", "description": "Fetch the page.", "tools": ["http_get"]},
        # A tool step with no list names its one tool: that tool is held to the plan's too.
        {"id": "s3", "tool": "http_get", "args": {"url": "http://127.0.0.1:9/page"}},
    ],
    ids=["model-step", "tool-step"],
)
def test_a_revision_may_not_widen_a_plan_of_tool_steps(tmp_path: Path, widen: dict) -> None:
    """A tool step with no tools list uses its one tool, not every tool of the run: after a
    plan of such steps, a revision (written from untrusted results) may use only those tools,
    and its own tool step needs no list to call one of them."""
    script = scenario(
        tools=["calculator", "http_get"],
        planner={"steps": [calc_step("s1", "6 * 7")]},
        executor={},
        replanner=[
            {
                "attempts": [
                    {"action": "replan", "reason": "look", "steps": [widen]},
                    {"action": "replan", "reason": "redo", "steps": [calc_step("s2", "1 + 1")]},
                ]
            },
            FINISH,
        ],
        faults=[{"step": "s1", "tool": "calculator", "kind": "empty"}],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done", r.state.get("reason")
    retry = r.log.texts("replanner")[1]
    assert "step 's3' names 'http_get', which the plan did not use" in retry
    assert r.started() == ["s1", "s2"]
    assert r.results["s2"]["result"] == "2"


URL = "http://127.0.0.1:9/page"


def test_a_revision_step_with_no_tools_list_gets_the_plans_tools(tmp_path: Path) -> None:
    """Without a list a model step may use every tool of the run, which would widen a plan that
    used fewer; the end call's MORE STEPS lines carry no lists, so such a step is given the
    plan's tools rather than refused, and its model is offered only those."""
    unlisted = {"id": "s4", "description": "Check the result."}
    script = scenario(
        tools=["calculator", "http_get"],
        planner={"steps": [calc_step("s1", "6 * 7")]},
        # The page the result pointed at: a tool the plan never used.
        executor={"s4": [{"tool_calls": [{"name": "http_get", "args": {"url": URL}}]}]},
        replanner=[{"action": "replan", "reason": "check", "steps": [unlisted]}, FINISH],
        faults=[{"step": "s1", "tool": "calculator", "kind": "empty"}],
    )
    r = run(tmp_path, script)

    assert r.state["status"] == "done", r.state.get("reason")
    (s4,) = [s for s in r.state["plan"] if s["id"] == "s4"]
    assert s4["tools"] == ["calculator"]
    assert r.results["s4"]["status"] == "failed"
    assert "http_get" in r.results["s4"]["error"], r.results["s4"]


def test_a_step_whose_tool_is_null_or_empty_is_a_model_step() -> None:
    """JSON plans often carry `"tool": null` on ordinary steps: they are run by the model."""
    from graphs.tool_step import is_tool_step

    assert not is_tool_step({"id": "s1", "tool": None})
    assert not is_tool_step({"id": "s1", "tool": ""})
    assert is_tool_step({"id": "s1", "tool": "calculator"})


def test_a_whole_escaped_reference_is_a_literal() -> None:
    assert resolve_args({"text": "$${HOME}"}, {}) == {"text": "${HOME}"}
    assert resolve_args({"text": ["$${a.b}", "x $${y}"]}, {}) == {"text": ["${a.b}", "x ${y}"]}


def test_the_planner_is_told_the_first_sentence_of_a_description_within_its_limit() -> None:
    @tool
    def lookup(key: str) -> str:
        """Look a record up by key. It returns JSON with its fields and many notes besides."""
        return ""

    line = describe_tools([lookup])
    assert line.endswith("Look a record up by key.")
    long_line = describe_tools([lookup], description_chars=12)
    assert len(long_line.partition("): ")[2]) <= 12 and long_line.endswith("...")
