"""Plans written one step per line (graphs/plan_text.py): what a line means, what is refused,
how a streamed reply hands over steps, and a run in either plan format."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import StructuredTool

from app.bench.tasks import all_tasks, lookup_tool
from graphs.plan_text import (
    MAX_LINE_CHARS,
    LineStream,
    PlanTextError,
    format_end_text,
    format_plan_text,
    parse_end_text,
    parse_plan_text,
)
from graphs.schemas import PlanStep, plan_problems
from graphs.tool_step import describe_tools, params_of_description, tool_params
from tests.scripted_runs import Run, run_scenario, write_scenario
from tests.unit.test_tool_steps import calculator_tools

PLAN = """```
1 = lookup("a")
2 = lookup(key="${1.next}")

3 (after 1, 2; tools: write_file): Write both records to notes.md.
4 (tools: none): Say which record is older.
5 (after 4) = calculator {"expression": "${2.value} * 2"}
```"""


PARAMS = {"lookup": ["key"], "calculator": ["expression"]}


def test_each_line_is_a_step_and_references_are_dependencies() -> None:
    steps = {s.id: s for s in parse_plan_text(PLAN, params=PARAMS)}
    assert list(steps) == ["1", "2", "3", "4", "5"]
    assert (steps["1"].tool, steps["1"].args, steps["1"].depends_on) == ("lookup", {"key": "a"}, [])
    assert steps["2"].depends_on == ["1"]  # from ${1.next}, not written twice
    assert steps["3"].tool == "" and steps["3"].description == "Write both records to notes.md."
    assert (steps["3"].depends_on, steps["3"].tools) == (["1", "2"], ["write_file"])
    assert steps["4"].tools == [] and steps["4"].depends_on == []
    assert steps["5"].depends_on == ["2", "4"] and steps["5"].tools is None
    # A dependency both referenced and written is listed once; `after` parts add up.
    (again,) = parse_plan_text('6 (after 1; after 2) = lookup("${1}")', ["1", "2"], PARAMS)
    assert again.depends_on == ["1", "2"]
    assert parse_plan_text("7 (after 1; after 2): Compare.")[0].depends_on == ["1", "2"]


def test_a_line_that_is_not_a_step_is_refused_with_its_number_never_guessed() -> None:
    text = 'Here is the plan:\n1 = lookup {"key": "a"}\n2 = lookup {key: b}\n3 (before 1): x\n'
    with pytest.raises(PlanTextError) as caught:
        parse_plan_text(text)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 3", "line 4"]
    assert "is not a step" in problems[0]
    assert "not a JSON object" in problems[1]
    with pytest.raises(PlanTextError, match="Infinity is not a JSON number"):
        parse_plan_text('1 = lookup {"key": Infinity}')
    with pytest.raises(PlanTextError, match="1e999 is not a finite number"):
        parse_plan_text('1 = lookup {"key": 1e999}')
    with pytest.raises(PlanTextError, match="nested too deeply"):
        parse_plan_text('1 = lookup {"key": ' + "[" * 5000 + "]" * 5000 + "}")
    assert "'before 1'" in problems[2]


def test_a_reference_to_a_later_step_is_no_dependency_and_the_plan_check_names_it(
    tmp_path: Path,
) -> None:
    steps = parse_plan_text(
        '1 = calculator {"expression": "${2}"}\n2 = calculator {"expression": "1"}'
    )
    assert steps[0].depends_on == []
    problems = plan_problems(steps, max_steps=12, tools=calculator_tools(tmp_path))
    assert any("'${2}'" in p and "not in its depends_on" in p for p in problems), problems


@pytest.mark.parametrize("task", all_tasks()[:4], ids=lambda t: t.name)
def test_formatting_then_parsing_gives_the_same_plan(task: Any, tmp_path: Path) -> None:
    tools = [lookup_tool(task), *calculator_tools(tmp_path).values()]
    params = params_of_description(describe_tools(tools))  # what a model sees of the order
    assert params == tool_params(tools)
    written = format_plan_text(task.plan, params)
    assert "{" not in written.splitlines()[0]  # positional: lookup("item-1")
    parsed = [s.model_dump(exclude_none=True) for s in parse_plan_text(written, params=params)]
    expected = [PlanStep.model_validate(s).model_dump(exclude_none=True) for s in task.plan]
    assert parsed == expected
    assert len(written.splitlines()) == len(task.plan)


def test_a_streamed_step_is_handed_over_when_its_newline_arrives() -> None:
    reader = LineStream(PARAMS)
    seen: list[tuple[int, str]] = []
    for end in range(len(PLAN) + 1):
        seen += [(end, s["id"]) for s in reader.feed(PLAN[:end])]
    assert [i for _, i in seen] == ["1", "2", "3", "4", "5"]
    first_newline = PLAN.index('("a")\n') + len('("a")\n')
    assert seen[0][0] == first_newline
    # The streamed steps are the steps the whole reply gives, dependencies from references too:
    # a streamed step 2 that lost its dependency on 1 would start before 1 is done.
    streamed = LineStream(PARAMS).feed(PLAN + "\n")
    assert streamed == [
        s.model_dump(exclude_none=True) for s in parse_plan_text(PLAN, params=PARAMS)
    ]
    assert streamed[1]["depends_on"] == ["1"]
    unfinished = '1 = lookup {"key": "a"}\n2 = lookup {"key": "b"}'
    assert [s["id"] for s in LineStream().feed(unfinished)] == ["1"]  # 2 may still grow


def test_a_bad_line_stops_the_stream_so_nothing_after_it_starts_early() -> None:
    text = '1 = lookup {"key": "a"}\noops\n2 = lookup {"key": "b"}\n'
    assert [s["id"] for s in LineStream().feed(text)] == ["1"]


def test_call_arguments_are_literals_positional_in_the_tools_order_or_named() -> None:
    params = {"fetch": ["url", "timeout", "headers"]}
    (step,) = parse_plan_text(
        'x = fetch("https://a.example", -2.5, headers={"k": [1, true, null, None]})', params=params
    )
    assert step.args == {
        "url": "https://a.example",
        "timeout": -2.5,
        "headers": {"k": [1, True, None, None]},
    }
    assert parse_plan_text("y = fetch()", params=params)[0].args == {}
    # An object whose keys are not the tool's parameters is a value, not the JSON form.
    (step,) = parse_plan_text('t = write_json({"a": 1})', params={"write_json": ["data"]})
    assert step.args == {"data": {"a": 1}}
    assert parse_plan_text('y = other(a="${x.b}")', ["x"])[0].depends_on == ["x"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ('__import__("os").system("touch PWNED")', "is not a literal value"),
        ("open", "is not a literal value"),
        ('"a" + "b"', "is not a literal value"),
        ('f"{x}"', "is not a literal value"),
        ("{1: 2}", "keys must be strings"),
        ("1e999", "not a finite number"),
        ("[-1e999]", "not a finite number"),
        ("-" * 400 + "1", "nested too deeply"),  # parses, but is deeper than the reader goes
        ('"a")  # then fetch("b"', "nothing may follow"),
        ('url="a", url="b"', "url given twice"),
        ('{"url": "a"}', "ambiguous"),  # the JSON form in parentheses
        ('"a")("b"', "as values or NAME=value"),
        ("*xs", "as values or NAME=value"),
        ("**kw", "as values or NAME=value"),
        ('"a", "b", "c", "d"', "takes 3 argument(s): url, timeout, headers"),
        ('"a", url="b"', "url given twice"),
        ('url="a", 1', "not a call's"),
        ("[" * 300 + "]" * 300, "not a call's"),
    ],
)
def test_call_arguments_that_are_not_literals_are_refused_and_never_evaluated(
    args: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlanTextError) as caught:
        parse_plan_text(f"1 = fetch({args})", params={"fetch": ["url", "timeout", "headers"]})
    assert problem in str(caught.value)
    assert not (tmp_path / "PWNED").exists()


def test_a_long_line_of_spaces_is_refused_at_once() -> None:
    # With plain `\s*` either side of an optional group this took 2-4 s a line (48 s for 20),
    # on the event loop; the bound is far above linear time and far below that.
    lines = ["1" + " " * 19_990 + "x", "1 = t" + " " * 19_990 + "x", "1 (" + " " * 19_990] * 7
    started = time.perf_counter()
    with pytest.raises(PlanTextError):
        parse_plan_text("\n".join(lines))
    assert time.perf_counter() - started < 2.0


def test_a_line_over_the_length_limit_is_refused_and_one_at_it_is_read() -> None:
    at_limit = "s1: " + "x" * (MAX_LINE_CHARS - 4)
    (step,) = parse_plan_text(at_limit)
    assert len(step.description) == MAX_LINE_CHARS - 4
    with pytest.raises(PlanTextError) as caught:
        parse_plan_text(f"s0: fine\n{at_limit}x")
    assert caught.value.problems == [
        f"line 2: the line is {MAX_LINE_CHARS + 1} characters; a step line is shorter"
    ]
    assert LineStream().feed(f"s0: fine\n{at_limit}x\ns2: after\n") == [
        {"id": "s0", "description": "fine", "depends_on": [], "tool": "", "args": {}}
    ], "the stream starts nothing from the long line or after it"


def test_the_stream_and_the_whole_reply_split_lines_alike() -> None:
    text = '1 = lookup("a\u2028b")\n2 = lookup("c\x85d")\n'
    streamed = LineStream(PARAMS).feed(text)
    whole = [s.model_dump(exclude_none=True) for s in parse_plan_text(text, params=PARAMS)]
    assert streamed == whole and [s["args"]["key"] for s in whole] == ["a\u2028b", "c\x85d"]


def test_parameters_that_are_not_python_names_are_written_as_json_and_read_back() -> None:
    params = {"mcp_t": ["q", "file-path", "from"]}
    step = {"id": "1", "tool": "mcp_t", "args": {"file-path": "x", "from": "y"}}
    written = format_plan_text([step], params)
    assert written == '1 = mcp_t {"file-path":"x","from":"y"}'
    assert parse_plan_text(written, params=params)[0].args == step["args"]
    with pytest.raises(PlanTextError, match=r"as a JSON object: TOOL \{"):
        parse_plan_text('1 = mcp_t(file-path="x")', params=params)


def test_formatted_lines_leave_out_implied_dependencies_and_python_keywords() -> None:
    """What the scripted planner writes is what the prompt asks for: a dependency a reference
    implies is not repeated in `(after ...)`; an argument named like a Python keyword cannot
    be `from=...` (a syntax error), so the JSON form is written."""
    written = format_plan_text(
        [s.model_dump(exclude_none=True) for s in parse_plan_text(PLAN, params=PARAMS)], PARAMS
    ).splitlines()
    assert written[1] == '2 = lookup("${1.next}")'
    assert written[4] == '5 (after 4) = calculator("${2.value} * 2")'
    step = {"id": "1", "tool": "copy", "args": {"from": "a.txt"}}
    assert format_plan_text([step], {"copy": ["to"]}) == '1 = copy {"from":"a.txt"}'
    assert parse_plan_text('1 = copy {"from":"a.txt"}')[0].args == {"from": "a.txt"}


def test_a_dict_schema_with_a_list_of_types_keeps_its_argument_order() -> None:
    schema = {
        "type": "object",
        "properties": {"q": {"type": ["string", "null"]}, "file-path": {"type": "string"}},
        "required": ["file-path"],
    }
    tool = StructuredTool(name="mcp_t", description="An MCP tool.", args_schema=schema)
    described = describe_tools([tool])
    assert described == "- mcp_t(q?: string|null, file-path: string): An MCP tool."
    assert params_of_description(described) == tool_params([tool]) == {"mcp_t": ["q", "file-path"]}


def test_positional_arguments_need_a_known_tool() -> None:
    with pytest.raises(PlanTextError, match="'nope' is not a tool of this run"):
        parse_plan_text('1 = nope("a")', params=PARAMS)
    assert parse_plan_text('1 = nope(key="a")', params=PARAMS)[0].args == {"key": "a"}


def test_the_end_reply_is_the_answer_or_more_steps() -> None:
    assert parse_end_text("  The total is 5.\nMORE STEPS later.", ["1"]) == {
        "action": "finish",
        "response": "The total is 5.\nMORE STEPS later.",
    }
    more = parse_end_text("MORE STEPS\n9 (after 1): Check the total.", ["1"])
    assert more["action"] == "replan"
    assert [(s["id"], s["depends_on"]) for s in more["steps"]] == [("9", ["1"])]
    lower = parse_end_text("More steps:\n9: Check the total.", ["1"])  # models vary the case
    assert lower["action"] == "replan" and lower["steps"][0]["id"] == "9"
    decision = {"action": "replan", "steps": [{"id": "9", "description": "Check it."}]}
    assert parse_end_text(format_end_text(decision), [])["steps"][0]["description"] == "Check it."


# runs -------------------------------------------------------------------------------------------


def _run(tmp_path: Path, plan_format: str, **parts: Any) -> Run:
    script = {
        "name": f"unit_plan_text_{plan_format}",
        "goal": "Add things.",
        "tools": ["calculator"],
        "planner": {
            "steps": [
                {"id": str(i), "tool": "calculator", "args": {"expression": f"{i} + {i}"}}
                for i in range(1, 7)
            ]
            + [
                {
                    "id": "7",
                    "depends_on": [str(i) for i in range(1, 7)],
                    "tool": "calculator",
                    "args": {"expression": " + ".join(f"${{{i}}}" for i in range(1, 7))},
                }
            ]
        },
        "executor": {},
        "replanner": [{"action": "finish", "reason": "done", "response": "The sum is 42."}],
        **parts,
    }
    (tmp_path / plan_format).mkdir()
    path = write_scenario(tmp_path / plan_format, script)
    return run_scenario(tmp_path / plan_format, path, plan_format=plan_format)


def test_a_plan_in_lines_costs_far_fewer_output_tokens_than_json_with_the_same_result(
    tmp_path: Path,
) -> None:
    lines, json_plan = _run(tmp_path, "lines"), _run(tmp_path, "json")
    for r in (lines, json_plan):
        assert r.state["status"] == "done", r.state.get("reason")
        assert r.results["7"]["result"].strip() == "42"
        assert r.state["response"] == "The sum is 42."
    planned = [lines.state["usage"]["planner"], json_plan.state["usage"]["planner"]]
    assert planned[0]["output_tokens"] < 0.6 * planned[1]["output_tokens"], planned
    ended = [lines.state["usage"]["replanner"], json_plan.state["usage"]["replanner"]]
    assert ended[0]["output_tokens"] < ended[1]["output_tokens"], ended  # no JSON around it


def test_a_plan_a_model_wrote_with_positional_arguments_runs_with_the_tools_order(
    tmp_path: Path,
) -> None:
    raw = '1 = calculator("6 * 7")\n2 = calculator(expression="${1} + 1")\n'
    r = _run(tmp_path, "lines", planner={"raw": raw})
    assert r.state["status"] == "done", r.state.get("reason")
    assert [r.results[i]["result"].strip() for i in ("1", "2")] == ["42", "43"]
    assert r.state["plan"][1]["depends_on"] == ["1"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("Step one: add 1 and 1", "line 1: 'Step one: add 1 and 1' is not a step"),
        ("1 = calculator(" + "-" * 400 + "1)", "nested too deeply"),  # once ended the run
        ('1 = calculator("1 + 1")  # calculator("2")', "nothing may follow"),
    ],
)
def test_an_unreadable_plan_goes_back_to_the_planner_with_the_bad_line(
    tmp_path: Path, raw: str, problem: str
) -> None:
    good = {"steps": [{"id": "1", "tool": "calculator", "args": {"expression": "1 + 1"}}]}
    r = _run(tmp_path, "lines", planner={"attempts": [{"raw": raw}, good]})
    assert r.state["status"] == "done", r.state.get("reason")
    assert r.calls("planner") == 2
    retry = r.log.texts("planner")[1]
    assert problem in retry


def test_more_steps_from_the_end_call_run_before_the_answer(tmp_path: Path) -> None:
    r = _run(
        tmp_path,
        "lines",
        executor={"8": [{"content": "checked: 42"}]},
        replanner=[
            {
                "action": "replan",
                "steps": [{"id": "8", "depends_on": ["7"], "description": "Check."}],
            },
            {"action": "finish", "response": "The sum is 42, checked."},
        ],
    )
    assert r.state["status"] == "done", r.state.get("reason")
    assert r.results["8"]["result"] == "checked: 42"
    assert r.state["response"] == "The sum is 42, checked."
    assert r.state["replans"] == 1


# model text that choked the parser (a review of the parsers, 2026-11-27) ----------------------


@pytest.mark.parametrize(
    "line",
    [
        "1 = lookup(1" + "0" * 400 + ")",  # isfinite() of a huge int raised OverflowError
        "1 = lookup(0x" + "f" * 300 + ")",
        "1 = lookup(-9223372036854775809)",  # past 64 bits: the checkpoint write would fail
        '1 = lookup {"key": ' + "1" * 5000 + "}",  # int() refuses 4,300+ digits: ValueError
        '1 = lookup {"key": 99999999999999999999}',
    ],
)
def test_a_number_too_large_for_a_checkpoint_is_a_plan_problem(line: str) -> None:
    with pytest.raises(PlanTextError, match="too large|not a JSON object"):
        parse_plan_text(line, params={"lookup": ["key"]})
    with pytest.raises(PlanTextError):
        parse_end_text(f"MORE STEPS\n3{line[1:]}", ["1"], {"lookup": ["key"]})
    assert parse_plan_text("1 = lookup(-9223372036854775808)", params={"lookup": ["key"]})


def test_a_line_a_check_chokes_on_stops_the_stream_as_a_bad_line_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Steps after a bad line must not start early: the whole reply is refused when it ends.
    A line that raised something other than PlanTextError (a 5,000-digit number raised
    ValueError) let steps 2 and 3 start; so would any check that chokes on a line."""
    stream = LineStream({"lookup": ["key"]})
    assert stream.feed('1 = lookup {"key": ' + "1" * 5000 + "}\n2: b\n3: c\n") == []

    from graphs import plan_text

    def choke(line: str, *args: Any) -> Any:
        raise RecursionError("a check that choked")

    monkeypatch.setattr(plan_text, "parse_step_line", choke)
    assert LineStream().feed("1: a\n2: b\n") == []


def test_a_fenced_more_steps_reply_is_read_as_steps_and_a_fenced_answer_kept() -> None:
    fenced = "```\nMORE STEPS\n3: look up item 2\n```"
    decision = parse_end_text(fenced, ["1", "2"])
    assert decision["action"] == "replan"
    assert [s["id"] for s in decision["steps"]] == ["3"]
    code = "```python\nprint(1)\n```"
    assert parse_end_text(code, ["1"]) == {"action": "finish", "response": code}


def test_a_plan_of_many_references_parses_in_linear_time() -> None:
    """Each reference re-sorted every id (split_ref) and each line copied the ids before it:
    10,000 lines took 12.8 s, so these 20,000 about 50 s; linear takes about 1 s. A bound far
    above linear's cost, with room for a loaded machine, and far below quadratic's."""
    text = "1: a\n" + "".join(f'{i} = t(x="${{1}}")\n' for i in range(2, 20_000))
    started = time.monotonic()
    steps = parse_plan_text(text)
    problems = plan_problems(steps, max_steps=12)
    assert time.monotonic() - started < 25
    assert len(steps) == 19_999 and steps[-1].depends_on == ["1"]
    assert problems[0] == "the plan has 19999 steps; the limit is 12"


def _ask_plan(replies: list[str], validate: Any) -> Any:
    import asyncio
    from functools import partial

    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import HumanMessage

    from graphs.planner import _plan_of_text
    from graphs.schemas import Plan
    from graphs.structured import acall_structured

    model = FakeListChatModel(responses=replies)
    parse = partial(_plan_of_text, params={})
    return model, asyncio.run(
        acall_structured(
            model,
            Plan,
            [HumanMessage("plan")],
            role="planner",
            model_name="m",
            validate=validate,
            parse_text=parse,
        )
    )


def test_the_problems_told_back_are_bounded() -> None:
    """A degenerate 64 KB reply had 32,768 bad lines: 4.4 MB of problems went back to the model
    (no context window holds it) and became the run's reason."""
    _, out = _ask_plan(["x\n" * 32768] * 3, lambda p: [])
    assert out.value is None and len(out.error) < 10_000
    assert out.error.startswith("the reply could not be read: line 1: 'x' is not a step")
    assert out.error.endswith("; and 32748 more problem(s)")


def test_a_check_that_chokes_on_a_reply_sends_it_back_instead_of_ending_the_run() -> None:
    calls: list[int] = []

    def validate(plan: Any) -> list[str]:
        calls.append(len(plan.steps))
        if len(calls) == 1:
            raise RecursionError("maximum recursion depth exceeded")
        return []

    model, out = _ask_plan(["1: a\n2: b", "1: a"], validate)
    assert out.value is not None and [s.id for s in out.value.steps] == ["1"]
    assert calls == [2, 1]
