"""Steps start while the plan streams; a plan found invalid after steps started keeps their
results only for steps of the exact same definition, and reports the rest as discarded."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.context import Context
from app.scripted.chat_model import ScriptedChatModel
from graphs.plan_execute import build_graph
from graphs.plan_stream import PlanStreamHandler, StepStream
from graphs.plan_text import parse_plan_text
from graphs.schemas import PlanStep
from tests.scripted_runs import run_scenario, write_scenario

FINISH = {"action": "finish", "reason": "done", "response": "The answer."}


def step(i: str, deps: list[str] | None = None, text: str = "") -> dict[str, Any]:
    return {"id": i, "description": text or f"Look up item {i}.", "depends_on": deps or []}


def scenario(planner: Any, executor: dict[str, Any], **parts: Any) -> dict[str, Any]:
    return {
        "name": "unit_streaming",
        "goal": "Test goal.",
        "tools": ["calculator"],
        "planner": planner,
        "executor": executor,
        "replanner": [FINISH],
        **parts,
    }


def answer(text: str) -> list[dict[str, Any]]:
    return [{"content": text}]


# the partial-JSON reader -----------------------------------------------------------------------


def test_a_step_is_handed_over_exactly_when_its_closing_brace_arrives() -> None:
    text = json.dumps({"steps": [step("a", text="tricky } ] { text"), step("b", ["a"])]})
    reader = StepStream()
    seen: list[tuple[int, str]] = []
    for end in range(len(text) + 1):
        seen += [(end, s["id"]) for s in reader.feed(text[:end])]
    assert [i for _, i in seen] == ["a", "b"]
    a_end = text.index('"depends_on": []}') + len('"depends_on": []}')
    assert seen[0][0] == a_end, "step a is complete at its own closing brace (not at the '}'"
    assert seen[1][0] == len(text) - 2, "inside its description), and b at its own"


def test_a_reply_that_is_not_a_steps_array_hands_over_nothing() -> None:
    reader = StepStream()
    assert reader.feed('{"note": "x", "steps": [{"id": "a"}]}') == []
    assert StepStream().feed('[{"id": "a"}]') == []


def test_only_the_first_tool_calls_arguments_are_read_as_the_plan() -> None:
    """A second tool call streaming beside the plan's (its own index) is not part of the plan:
    its arguments must not be spliced into the steps array."""
    seen: list[dict[str, Any]] = []
    handler = PlanStreamHandler(on_step=seen.append, on_attempt=lambda: None)
    handler.on_chat_model_start({}, [[]])
    pieces = [
        (0, '{"steps": [{"id": "a", "description": "x", "depends_on": []}, '),
        (1, '{"id": "intruder", "description": "y", "depends_on": []}, '),
        (0, '{"id": "b", "description": "z", "depends_on": ["a"]}]}'),
    ]
    for index, args in pieces:
        chunk = AIMessageChunk(content="", tool_call_chunks=[{"index": index, "args": args}])
        handler.on_llm_new_token("", chunk=ChatGenerationChunk(message=chunk))
    assert [s["id"] for s in seen] == ["a", "b"]


# streaming the scripted model ------------------------------------------------------------------


def test_scripted_model_streams_chunk_by_chunk_with_per_token_latency(tmp_path: Path) -> None:
    script = scenario(
        {"steps": [step(f"s{i}") for i in range(6)]},
        {},
        latency={"planner": 0.2},
        token_latency={"planner": 0.004},
    )
    model = ScriptedChatModel(scenario=str(write_scenario(tmp_path, script)))
    messages = [SystemMessage("You are the planner."), HumanMessage("Test goal.")]
    config = {"metadata": {"planexec_role": "planner"}}
    start = time.monotonic()
    arrivals, chunks = [], []
    for chunk in model.stream(messages, config=config):
        arrivals.append(time.monotonic() - start)
        chunks.append(chunk)
    text = "".join(chunks[i].content for i in range(len(chunks)))
    tokens = chunks[-1].usage_metadata["output_tokens"]

    # Asked with no Plan tool, the scripted planner writes plan lines (graphs/plan_text.py).
    whole = [s.model_dump() for s in parse_plan_text(text)]
    assert whole == [PlanStep.model_validate(step(f"s{i}")).model_dump() for i in range(6)]
    assert len(chunks) > 5, "pieces of a few tokens, not one reply"
    # Lower bounds only (each is a sum of sleeps), so a loaded machine cannot fail them.
    assert arrivals[0] >= 0.2, "the first piece comes after the time to the first token"
    assert arrivals[-1] - arrivals[0] >= 0.004 * tokens * 0.8, "the rest is paced per token"
    assert sum(c.usage_metadata is not None for c in chunks) == 1, "usage once, on the last"


# steps start while the plan streams ------------------------------------------------------------


def fanout(n: int) -> dict[str, Any]:
    steps = [step(f"s{i}") for i in range(1, n + 1)]
    steps.append(step("total", [f"s{i}" for i in range(1, n + 1)], "Add them up."))
    executor = {f"s{i}": answer(f"item {i} costs {i}") for i in range(1, n + 1)}
    executor["total"] = answer("the total")
    return scenario(
        {"steps": steps},
        executor,
        latency={"planner": 0.1, "executor": 0.05},
        token_latency={"planner": 0.004},
    )


def test_first_step_starts_before_the_plan_is_complete(tmp_path: Path) -> None:
    r = run_scenario(tmp_path, write_scenario(tmp_path, fanout(4)), max_concurrency=8)
    plan_at = r.of_kind("plan")[0]["at"]
    started = {e["step_id"]: e["at"] for e in r.of_kind("step_started")}

    assert r.state["status"] == "done", r.state.get("reason")
    assert started["s1"] < plan_at - 0.1, "s1 started while later steps were still streaming"
    assert started["total"] > max(r.results[f"s{i}"]["finished_at"] for i in range(1, 5))
    assert r.calls("executor") == 5 and r.calls("planner") == 1


def test_without_streaming_no_step_starts_before_the_plan(tmp_path: Path) -> None:
    r = run_scenario(
        tmp_path, write_scenario(tmp_path, fanout(4)), max_concurrency=8, stream_plan=False
    )
    plan_at = r.of_kind("plan")[0]["at"]
    assert r.state["status"] == "done"
    assert min(e["at"] for e in r.of_kind("step_started")) > plan_at


def test_approval_runs_nothing_before_a_person_approves(tmp_path: Path) -> None:
    path = write_scenario(tmp_path, fanout(2))
    ctx = Context.every_role(f"scripted:{path}", approve_plan=True, tools=["calculator"])
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    assert [e["event"] for e in events] == ["plan", "paused"]


# a plan that turns out invalid after steps started ---------------------------------------------


@pytest.mark.parametrize(
    ("executor_s", "retry_s"),
    [(0.3, 0.0), (0.0, 0.3)],
    ids=["old-step-still-running", "old-step-finished-before-retry"],
)
def test_retry_keeps_results_of_identical_steps_and_discards_changed_ones(
    tmp_path: Path, executor_s: float, retry_s: float
) -> None:
    bad = {"steps": [step("s1"), step("s2"), step("s3", ["nope"])]}
    good = {
        "steps": [step("s1"), step("s2", ["s1"], "Look up item 2 in euros."), step("s3")],
        "latency": retry_s,
    }
    script = scenario(
        {"attempts": [bad, good]},
        {"s1": answer("one"), "s2": answer("two"), "s3": answer("three")},
        latency={"executor": executor_s},
        # The rest of the bad reply takes a while to arrive, as a real one's does: an old step
        # with a fast executor finishes before the retry starts.
        token_latency={"planner": 0.01},
    )
    r = run_scenario(tmp_path, write_scenario(tmp_path, script))

    assert r.state["status"] == "done", r.state.get("reason")
    assert r.calls("planner") == 2
    assert r.started().count("s1") == 1, "s1 is the same step in both plans: it ran once"
    assert r.started().count("s2") == 2, "s2 changed: the old result is not used for it"
    assert r.results["s2"]["description"] == "Look up item 2 in euros."
    assert r.results["s2"]["started_at"] >= r.results["s1"]["finished_at"], "it needs s1 now"
    s2_finished = [e for e in r.of_kind("step_finished") if e["step_id"] == "s2"]
    # An old s2 that finished while its plan was current was reported then (and is discarded
    # now); one still running when the retry came is never reported as the new plan's s2.
    assert len(s2_finished) == (2 if retry_s else 1)
    (discarded,) = r.of_kind("step_discarded")
    assert (discarded["step_id"], discarded["description"]) == ("s2", "Look up item s2.")
    (entry,) = [h for h in r.state["history"] if h["action"] == "discarded"]
    assert [x["description"] for x in entry["results"]] == ["Look up item s2."]
    assert r.calls("executor") == 4, "the discarded step's model call is still counted"


def test_an_old_plans_step_finishing_after_the_retry_is_no_dependency_of_the_new_plan(
    tmp_path: Path,
) -> None:
    """The old s1 (another definition) finishes while the retry's s1 still runs: s2 must wait
    for the new s1, not start on the old one's result (s2's own definition matches, so a result
    made from the old s1 would be kept)."""
    bad = {"steps": [step("s1"), step("s2", ["nope"])]}
    good = {"steps": [step("s1", text="Look up item 1 in euros."), step("s2", ["s1"])]}
    script = scenario(
        {"attempts": [bad, good]},
        {"s1": [{"content": "one", "latency": 0.5}], "s2": answer("two")},
        token_latency={"planner": 0.005},
    )
    r = run_scenario(tmp_path, write_scenario(tmp_path, script))

    assert r.state["status"] == "done", r.state.get("reason")
    assert r.started() == ["s1", "s1", "s2"], "the old s1 was still running at the retry"
    assert r.results["s1"]["description"] == "Look up item 1 in euros."
    assert r.results["s2"]["started_at"] >= r.results["s1"]["finished_at"], "s2 used the old s1"
    assert [e["step_id"] for e in r.of_kind("step_discarded")] == ["s1"]


def test_a_retrys_steps_start_while_the_retry_streams(tmp_path: Path) -> None:
    """A retry is a new plan: its steps are checked on their own, not after the rejected
    reply's (whose ids they reuse), so they too start before the reply is complete."""
    bad = {"steps": [step("s1"), step("s2", ["nope"])]}
    long = "Look up item 2 " + "and more " * 20 + "."
    good = {"steps": [step("s1", text="Look up item 1 in euros."), step("s2", text=long)]}
    script = scenario(
        {"attempts": [bad, good]},
        {"s1": answer("one"), "s2": answer("two")},
        token_latency={"planner": 0.01},
    )
    r = run_scenario(tmp_path, write_scenario(tmp_path, script))

    assert r.state["status"] == "done", r.state.get("reason")
    started = [(e["event"], e.get("step_id")) for e in r.events]
    starts = [i for i, started_s1 in enumerate(started) if started_s1 == ("step_started", "s1")]
    assert len(starts) == 2, "s1 changed: the retry's s1 is a new step"
    assert starts[1] < r.index("plan"), "the retry's s1 waited for the whole reply"
    assert r.results["s1"]["description"] == "Look up item 1 in euros."


def test_a_surprise_while_the_plan_streams_starts_nothing_more_before_the_replanner(
    tmp_path: Path,
) -> None:
    """s1 flags a surprise before the plan has finished streaming; the planner's final plan
    must not restart the batch: s2 (ready once s1 is done) waits for the replanner."""
    steps = [step("s1"), step("s2", ["s1"], "Use what s1 found " + "and more " * 20 + ".")]
    script = scenario(
        {"steps": steps},
        {
            "s1": [
                {"tool_calls": [{"name": "flag_surprise", "args": {"reason": "no such table"}}]},
                {"content": "nothing found"},
            ],
            "s2": answer("unused"),
        },
        token_latency={"planner": 0.01},
    )
    r = run_scenario(tmp_path, write_scenario(tmp_path, script))

    assert r.index("step_finished", "s1") < r.index("plan"), "s1 finished while streaming"
    assert r.started() == ["s1"], "s2 was ready, but the replanner looks first"
    assert r.results["s1"]["surprise"] == "no such table"
    assert r.state["replanner_calls"] == 1


def test_a_fatal_error_in_a_replaced_plans_step_starts_nothing_more(tmp_path: Path) -> None:
    """s1 of the first (invalid) plan hits a scenario bug after the retry replaced its plan,
    while the retry's s3 runs; the bug ends the run, so s4 (ready once s3 is done) must not
    start and be paid for."""
    calc_turn = {"tool_calls": [{"name": "calculator", "args": {"expression": "1"}}]}
    bad = {"steps": [step("s1"), step("s2", ["nope"])]}
    good = {"steps": [step("s3"), step("s4", ["s3"])]}
    script = scenario(
        {"attempts": [bad, good]},
        # s1 has no second turn: a scenario bug, once its first turn's latency has passed.
        {
            "s1": [{**calc_turn, "latency": 0.4}],
            "s3": [{"content": "three", "latency": 1.0}],
            "s4": answer("four"),
        },
        token_latency={"planner": 0.005},
    )
    r = run_scenario(tmp_path, write_scenario(tmp_path, script))

    assert r.state["status"] == "failed"
    assert "step 's1'" in r.state["reason"]
    assert r.calls("planner") == 2
    (entry,) = [h for h in r.state["history"] if h["action"] == "discarded"]
    (s1,) = entry["results"]
    assert s1["finished_at"] < r.results["s3"]["finished_at"], "s1 failed while s3 ran"
    assert r.started() == ["s1", "s3"], "nothing starts after a fatal error"


def test_no_valid_plan_fails_the_run_and_reports_the_started_steps(tmp_path: Path) -> None:
    bad = {"steps": [step("s1"), step("s1")]}
    script = scenario({"attempts": [bad, bad, bad]}, {"s1": answer("one")})
    r = run_scenario(tmp_path, write_scenario(tmp_path, script))

    assert r.state["status"] == "failed"
    assert "planner output invalid after 3 attempts" in r.state["reason"]
    assert "1 step(s) that had started were discarded" in r.state["reason"]
    assert r.results == {}, "nothing from an invalid plan is mixed into the run's results"
    assert [e["step_id"] for e in r.of_kind("step_discarded")] == ["s1"]
    assert r.started() == ["s1"], "the same definition was not run again on each retry"


# a crash while the plan streams ---------------------------------------------------------------


class FlakyStore(InMemoryStore):
    """A store whose journal write for one step fails once: the node crashes mid-batch."""

    def __init__(self, fail_step: str) -> None:
        super().__init__()
        self.fail_step = fail_step

    def batch(self, ops):  # noqa: ANN001 - every write goes through here (put too)
        ops = list(ops)
        keys = [getattr(op, "key", "") for op in ops if getattr(op, "value", None) is not None]
        if self.fail_step and any(k.startswith(f"{self.fail_step}#") for k in keys):
            self.fail_step = ""
            raise OSError("disk full")
        return super().batch(ops)


def test_a_crash_mid_stream_loses_no_finished_step(tmp_path: Path) -> None:
    steps = [step("s1"), step("s2", ["s1"]), step("s3", ["s2"])]
    script = scenario(
        {"steps": steps},
        {"s1": answer("one"), "s2": answer("two"), "s3": answer("three")},
        latency={"executor": 0.02},
    )
    path = write_scenario(tmp_path, script)
    ctx = Context.every_role(f"scripted:{path}", tools=["calculator"])
    graph = build_graph(checkpointer=InMemorySaver(), store=FlakyStore(fail_step="s2"))
    config = {"configurable": {"thread_id": "t"}}

    with pytest.raises(OSError, match="disk full"):
        list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    events = list(graph.stream(None, config, context=ctx, stream_mode="custom"))

    finished = {e["step_id"]: e["recovered"] for e in events if e["event"] == "step_finished"}
    assert graph.get_state(config).values["status"] == "done"
    assert finished == {"s1": True, "s2": False, "s3": False}, "s1 was journaled: not rerun"


# async tools -----------------------------------------------------------------------------------


def test_a_tool_with_only_an_async_implementation_runs(tmp_path: Path) -> None:
    async def price(item: str) -> str:
        """The price of an item."""
        return f"{item} costs 7"

    tool = StructuredTool.from_function(coroutine=price, name="price")
    script = scenario(
        {"steps": [step("s1")]},
        {
            "s1": [
                {"tool_calls": [{"name": "price", "args": {"item": "gear"}}]},
                {"content": "{last_tool_result}"},
            ]
        },
        tools=[],
    )
    path = write_scenario(tmp_path, script)
    ctx = Context.every_role(f"scripted:{path}", tools=[])
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore(), tools=[tool])
    state = graph.invoke({"goal": "g"}, {"configurable": {"thread_id": "t"}}, context=ctx)

    assert state["status"] == "done", state.get("reason")
    assert state["results"]["s1"]["result"] == "gear costs 7"


# an edit after a streamed planner ------------------------------------------------------------


def test_editing_a_step_that_already_ran_while_streaming_runs_it_again(tmp_path: Path) -> None:
    script = scenario(
        {"steps": [step("s1"), step("s2"), step("s3", ["s1", "s2"])]},
        {"s1": answer("one"), "s2": answer("two"), "s3": answer("three")},
    )
    path = write_scenario(tmp_path, script)
    ctx = Context.every_role(f"scripted:{path}", tools=["calculator"])
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"goal": "g"}, config, context=ctx)
    after_planner = next(s for s in graph.get_state_history(config) if s.metadata.get("step") == 1)
    assert after_planner.next == ("executor",)
    assert set(after_planner.values["results"]) == {"s1", "s2", "s3"}, "all ran while streaming"

    plan = [dict(s) for s in after_planner.values["plan"]]
    plan[0]["description"] = "Look up item s1 again, in euros."
    fork = graph.update_state(after_planner.config, {"plan": plan}, as_node="planner")
    events = list(graph.stream(None, fork, context=ctx, stream_mode="custom"))

    started = [e["step_id"] for e in events if e["event"] == "step_started"]
    assert started == ["s1", "s3"], "the edited step and the step that uses it run again"
    state = graph.get_state(config).values
    assert state["results"]["s1"]["description"] == "Look up item s1 again, in euros."
    assert state["status"] == "done"


# a stream cut mid-way ---------------------------------------------------------------------------


def _logging_plan(drops: int | None) -> dict[str, Any]:
    """Two independent steps that each append a line; the plan's stream is cut at 80% (s1's
    line has arrived and s1 has started, s2's has not), on its first `drops` calls."""
    log = lambda line: {  # noqa: E731
        "tool_calls": [
            {"name": "write_file", "args": {"path": "log.txt", "append": True, "content": line}}
        ]
    }
    long = "Log s2, with a description long enough that its line arrives well after s1's."
    planner = {"steps": [step("s1", text="Log s1."), step("s2", text=long)], "drop_at": 0.8}
    return scenario(
        {**planner, **({"drops": drops} if drops else {})},
        {"s1": [log("s1\n"), answer("logged s1")[0]], "s2": [log("s2\n"), answer("logged s2")[0]]},
        tools=["write_file"],
        token_latency={"planner": 0.02},
    )


def test_a_plan_whose_stream_drops_is_asked_again_and_its_started_step_runs_once(
    tmp_path: Path,
) -> None:
    """A dropped connection is transient: LangGraph's RetryPolicy runs the planner node again,
    in the same task, so s1 (started from the cut stream, same definition) keeps its journaled
    result and its line is written once."""
    path = write_scenario(tmp_path, _logging_plan(drops=1))
    r = run_scenario(tmp_path, path, thread_id=f"drop-{uuid.uuid4().hex}")

    assert r.state["status"] == "done", r.state.get("reason")
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n", "s1's write made once"
    assert r.calls("executor") == 4, "s1's two turns were not paid again"
    assert not r.of_kind("step_discarded")


def test_a_plan_whose_stream_drops_every_time_fails_and_reports_its_started_step(
    tmp_path: Path,
) -> None:
    path = write_scenario(tmp_path, _logging_plan(drops=None))
    r = run_scenario(tmp_path, path, thread_id=f"drop-{uuid.uuid4().hex}")

    assert r.state["status"] == "failed"
    assert "the stream dropped" in r.state["reason"]
    assert "1 step(s) that had started were discarded" in r.state["reason"]
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\n", "three node attempts, one write"
    assert [e["step_id"] for e in r.of_kind("step_discarded")] == ["s1"]
    assert r.results == {}


def test_a_scripted_drop_cuts_only_streams_and_only_as_often_as_asked(tmp_path: Path) -> None:
    from app.scripted.chat_model import prepare
    from app.scripted.streaming import StreamDropped, StreamDrops

    planner = {"steps": [step("s1"), step("s2")], "drop_at": 0.5, "drops": 2}
    path = write_scenario(tmp_path, scenario(planner, {}))
    messages = [SystemMessage("You are the planner"), HumanMessage("g")]
    drops = StreamDrops()

    def streamed(thread: str) -> tuple[int, bool]:
        played = prepare(
            str(path), messages, [], {"planexec_role": "planner", "thread_id": thread}, drops=drops
        )
        pieces = []
        try:
            pieces.extend(chunk for _, chunk in played.chunks())
        except StreamDropped:
            return len(pieces), True
        return len(pieces), False

    whole = prepare(
        str(path), messages, [], {"planexec_role": "planner", "thread_id": "a"}, drops=drops
    )
    assert whole.result().content, "an unstreamed call is answered whole, and uses no drop"
    first, second, third = streamed("a"), streamed("a"), streamed("a")
    assert first[1] and second[1] and not third[1], "the first two streams drop, the third not"
    assert 0 < first[0] < third[0] and abs(first[0] - third[0] / 2) <= 1, "cut at half"
    assert streamed("b")[1], "another run's count is its own"


def test_a_long_step_is_parsed_once_not_on_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk re-parsed the step still arriving from its start: a 200 KB description took
    seconds on the event loop. The object is scanned on and parsed when its brace closes."""
    from graphs import plan_stream

    calls: list[int] = []
    decoder = plan_stream._DECODER

    class Counting:
        def raw_decode(self, text: str, start: int) -> tuple[Any, int]:
            calls.append(start)
            return decoder.raw_decode(text, start)

    monkeypatch.setattr(plan_stream, "_DECODER", Counting())
    tricky = 'a "quoted" } { \\\\ \\" brace' * 2000
    plan = {"steps": [step("a", text=tricky), step("b", ["a"], text="} {")]}
    text, reader, seen = json.dumps(plan), StepStream(), []
    for end in range(0, len(text) + 4, 4):
        seen += reader.feed(text[:end])
    assert seen == plan["steps"]
    assert len(calls) == 2, "one parse per step"


def test_a_run_continued_after_its_planner_stopped_keeps_the_context_its_steps_ran_under(
    tmp_path: Path,
) -> None:
    """Steps run inside the planner node while the plan streams, and the run's context reached
    the state only when that node finished. Stopped there (a crash, a server's cancel) and
    continued by a caller with another context (or none), the run went on under the caller's:
    other models, tools and workspace half-way through."""
    log = lambda tag: {  # noqa: E731
        "tool_calls": [
            {"name": "write_file", "args": {"path": "log.txt", "append": True, "content": tag}}
        ]
    }
    steps = [step("s1"), step("s2", ["s1"])]
    script = scenario(
        {"steps": steps},
        {"s1": [log("s1\n"), answer("one")[0]], "s2": [log("s2\n"), answer("two")[0]]},
        tools=["write_file"],
    )
    path = write_scenario(tmp_path, script)
    first = Context.every_role(
        f"scripted:{path}", tools=["write_file"], workspace=str(tmp_path / "a")
    )
    other = Context.every_role(
        f"scripted:{path}", tools=["write_file"], workspace=str(tmp_path / "b")
    )
    graph = build_graph(checkpointer=InMemorySaver(), store=FlakyStore(fail_step="s2"))
    config = {"configurable": {"thread_id": "t"}}

    with pytest.raises(OSError, match="disk full"):
        list(graph.stream({"goal": "g"}, config, context=first, stream_mode="custom"))
    list(graph.stream(None, config, context=other, stream_mode="custom"))

    state = graph.get_state(config).values
    assert state["status"] == "done", state.get("reason")
    assert state["context"]["workspace"] == str(tmp_path / "a")
    assert (tmp_path / "a" / "log.txt").read_text() == "s1\ns2\n"
    assert not (tmp_path / "b" / "log.txt").exists(), "the caller's workspace was used"


@pytest.mark.parametrize("plan_format", ["lines", "json"])
def test_a_streamed_step_holding_unstorable_text_is_the_plan_s_step_and_runs_once(
    tmp_path: Path, plan_format: str
) -> None:
    """A step that starts while the plan streams is read from the stream, the plan from the
    whole reply: both must make a NUL or lone surrogate U+FFFD alike, or the started step is
    not the plan's step, its result is set aside, and it runs again."""
    script = fanout(2)
    script["planner"]["steps"][0]["description"] = "Look up \x00 item \ud800 one."
    r = run_scenario(tmp_path, write_scenario(tmp_path, script), max_concurrency=8,
                     plan_format=plan_format)  # fmt: skip
    assert r.state["status"] == "done", r.state.get("reason")
    assert r.state["plan"][0]["description"] == "Look up \ufffd item \ufffd one."
    started = [e["step_id"] for e in r.of_kind("step_started")]
    assert started.count("s1") == 1 and r.calls("executor") == 3
