"""`ScriptedChatModel`: a real LangChain chat model that plays a scenario file offline.

It picks its reply from the call's planexec metadata (role, step, attempt, call) and from how
many replies the conversation already holds, never from the prompt text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from app.scripted.chat_model import ScriptedChatModel, ScriptedQuotaError, ScriptError
from app.scripted.tokens import count_messages, count_reply
from graphs.schemas import Plan, ReplanDecision
from graphs.structured import call_config

SCRIPT = {
    "name": "unit_scripted",
    "goal": "Anything.",
    "tools": ["calculator"],
    "planner": {
        "steps": [
            {"id": "s1", "description": "Add.", "depends_on": []},
            {"id": "s2", "description": "Report.", "depends_on": ["s1"]},
        ]
    },
    "executor": {
        "s1": [
            {"tool_calls": [{"name": "calculator", "args": {"expression": "40 + 2"}}]},
            {"content": "The sum is {last_tool_result}."},
        ],
        "s1#2": [{"content": "second attempt"}],
        "s2": [{"content": "report written"}],
        "s3": [{"error": "quota", "message": "quota exhausted"}],
    },
    "replanner": [
        {"action": "continue", "reason": "fine"},
        {"action": "finish", "reason": "done", "response": "42"},
    ],
}


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return "42"


@pytest.fixture
def model(tmp_path: Path) -> ScriptedChatModel:
    path = tmp_path / "unit_scripted.json"
    path.write_text(json.dumps(SCRIPT), encoding="utf-8")
    return ScriptedChatModel(scenario=str(path))


def ask(goal: str = "What is 40 + 2?") -> list:
    return [SystemMessage("You run one step."), HumanMessage(goal)]


def test_is_a_chat_model_with_tools_and_structured_output(model: ScriptedChatModel) -> None:
    assert isinstance(model, BaseChatModel)

    reply = model.bind_tools([calculator]).invoke(
        ask(), config=call_config("executor", step="s1", attempt=1)
    )
    assert reply.tool_calls[0]["name"] == "calculator"
    assert reply.tool_calls[0]["args"] == {"expression": "40 + 2"}

    out = model.with_structured_output(Plan, include_raw=True).invoke(
        ask(), config=call_config("planner", call=0)
    )
    assert isinstance(out["parsed"], Plan)
    assert [s.id for s in out["parsed"].steps] == ["s1", "s2"]
    assert out["parsed"].steps[1].depends_on == ["s1"]
    assert isinstance(out["raw"], AIMessage)


def test_replanner_reply_is_chosen_by_call_number(model: ScriptedChatModel) -> None:
    structured = model.with_structured_output(ReplanDecision)
    first = structured.invoke(ask(), config=call_config("replanner", call=0))
    second = structured.invoke(ask(), config=call_config("replanner", call=1))
    assert (first.action, second.action, second.response) == ("continue", "finish", "42")


def test_usage_counts_the_messages_and_the_bound_tool_schemas(model: ScriptedChatModel) -> None:
    messages = ask()
    config = call_config("executor", step="s2", attempt=1)

    plain = model.invoke(messages, config=config)
    with_tools = model.bind_tools([calculator]).invoke(messages, config=config)

    assert plain.usage_metadata["input_tokens"] == count_messages(messages)
    assert with_tools.usage_metadata["input_tokens"] == count_messages(
        messages, [convert_to_openai_tool(calculator)]
    )
    assert with_tools.usage_metadata["input_tokens"] > plain.usage_metadata["input_tokens"]
    assert plain.usage_metadata["output_tokens"] == count_reply(plain) > 0
    assert plain.usage_metadata["total_tokens"] == (
        plain.usage_metadata["input_tokens"] + plain.usage_metadata["output_tokens"]
    )
    assert plain.response_metadata["model_name"] == "openai:gpt-4o-mini"  # priced as


def test_reply_depends_on_metadata_not_on_the_goal(model: ScriptedChatModel) -> None:
    s2 = call_config("executor", step="s2", attempt=1)
    a = model.invoke(ask("Write a poem."), config=s2)
    b = model.invoke(ask("Compute the orbit of Mars."), config=s2)
    assert a.content == b.content == "report written"

    retry = model.invoke(ask("Write a poem."), config=call_config("executor", step="s1", attempt=2))
    assert retry.content == "second attempt"  # attempt 2 plays "s1#2"


def test_turn_is_the_number_of_replies_already_in_the_conversation(
    model: ScriptedChatModel,
) -> None:
    config = call_config("executor", step="s1", attempt=1)
    bound = model.bind_tools([calculator])
    first = bound.invoke(ask(), config=config)
    tool_result = ToolMessage("42", tool_call_id=first.tool_calls[0]["id"], name="calculator")
    second = bound.invoke([*ask(), first, tool_result], config=config)
    assert second.tool_calls == []
    assert second.content == "The sum is 42."  # {last_tool_result} filled in


def test_last_tool_result_skips_flag_surprise(model: ScriptedChatModel) -> None:
    config = call_config("executor", step="s1", attempt=1)
    history = [
        *ask(),
        AIMessage("", tool_calls=[{"name": "calculator", "args": {}, "id": "c1"}]),
        ToolMessage("41.5", tool_call_id="c1", name="calculator"),
        ToolMessage("Noted; the replanner will see it.", tool_call_id="c2", name="flag_surprise"),
    ]
    assert model.invoke(history, config=config).content == "The sum is 41.5."


def test_missing_turn_raises_script_error_naming_scenario_role_and_step(
    model: ScriptedChatModel,
) -> None:
    config = call_config("executor", step="s2", attempt=1)
    done = model.invoke(ask(), config=config)
    with pytest.raises(ScriptError) as info:
        model.invoke([*ask(), done], config=config)  # s2 has only one turn
    message = str(info.value)
    assert "scenario 'unit_scripted'" in message
    assert "executor turn 2 for step 's2'" in message

    with pytest.raises(ScriptError, match="no executor turn 1 for step 'nope'"):
        model.invoke(ask(), config=call_config("executor", step="nope", attempt=1))
    with pytest.raises(ScriptError, match="no reply for the replanner call 3"):
        model.with_structured_output(ReplanDecision).invoke(
            ask(), config=call_config("replanner", call=2)
        )


def test_called_outside_a_planexec_graph_raises(model: ScriptedChatModel) -> None:
    with pytest.raises(ScriptError, match="only plays inside a planexec graph"):
        model.invoke(ask())


def test_scripted_quota_error_looks_like_a_429(model: ScriptedChatModel) -> None:
    with pytest.raises(ScriptedQuotaError, match="quota exhausted") as info:
        model.invoke(ask(), config=call_config("executor", step="s3", attempt=1))
    assert info.value.status_code == 429


def test_a_retry_past_the_scripted_attempts_has_no_reply_rather_than_crashing() -> None:
    """A run can retry more often than a scenario scripted: the model then says the scenario
    has no reply (a ScriptError naming it), not an IndexError from inside the script."""
    from app.scripted.scenarios import PlanAttempts, PlanReply, pick_attempt

    entry = PlanAttempts(attempts=[PlanReply(raw="not a plan"), PlanReply(raw="still not")])
    assert pick_attempt(entry, 1).raw == "still not"
    assert pick_attempt(entry, 2) is None
    assert pick_attempt(PlanReply(raw="once"), 1) is None


def test_a_scenario_that_is_no_readable_file_is_refused_naming_it(tmp_path) -> None:
    import os

    import pytest

    from app.scripted.scenarios import ScenarioError, load_scenario

    folder = tmp_path / "folder.json"
    folder.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    for path, says in (
        (folder, "is a folder; give a file"),
        (fifo, "is not a regular file"),  # not opened: reading a FIFO would wait for a writer
        (latin, "latin.json is not UTF-8 text"),
        (tmp_path / "gone.json", "does not exist"),
    ):
        with pytest.raises(ScenarioError, match=says):
            load_scenario(str(path))
