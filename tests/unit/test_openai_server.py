"""The scenario's OpenAI-compatible server, in process (no sockets): request and response shapes,
streaming, usage, error mapping and the injected faults."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from langchain_core.messages import AIMessage, BaseMessage
from starlette.testclient import TestClient
from typer.testing import CliRunner

from app.cli.serve_command import register
from app.scripted.scenarios import ScenarioError, load_scenario
from app.scripted.server import (
    BAD_JSON,
    ServerFaults,
    banner,
    create_app,
    to_langchain,
)
from app.scripted.tokens import count_messages, count_reply
from graphs.schemas import Plan, ReplanDecision
from prompts import render

FAST = str(Path(__file__).resolve().parents[1] / "scenarios" / "openai_demo_fast.json")
PLAN = load_scenario(FAST).planner.model_dump(exclude_none=True, exclude={"latency"})


def client(scenario: str = FAST, **faults: Any) -> TestClient:
    return TestClient(create_app(scenario, faults=ServerFaults(**faults)))


def planner_messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": render("planner", max_steps=12, tools="sql_query")},
        {"role": "user", "content": "Which category sold best?"},
    ]


def executor_messages(step: str = "s1", attempt: int = 1) -> list[dict[str, Any]]:
    task = render(
        "executor_task",
        goal="Which category sold best?",
        step_id=step,
        attempt=attempt,
        description="Do the step.",
        dependencies="(none)",
    )
    return [
        {"role": "system", "content": render("executor", max_tool_calls=6)},
        {"role": "user", "content": task},
    ]


def replanner_messages(review: int) -> list[dict[str, Any]]:
    task = render(
        "replanner_task",
        goal="Which category sold best?",
        progress="[s1] ...",
        why="no step of the plan is left to run",
        review=review,
        replans=0,
        max_replans=5,
    )
    return [
        {"role": "system", "content": render("replanner", max_steps=12, tools="sql_query")},
        {"role": "user", "content": task},
    ]


def tool(name: str, **properties: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": "object",
                "properties": {k: {"type": v} for k, v in properties.items()},
            },
        },
    }


EXECUTOR_TOOLS = [
    tool("sql_query", query="string"),
    tool("calculator", expression="string"),
    tool("flag_surprise", reason="string"),
]
PLAN_TOOL = {
    "type": "function",
    "function": {
        "name": "Plan",
        "description": "A structured plan.",
        "parameters": Plan.model_json_schema(),
    },
}
PLAN_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "Plan", "schema": Plan.model_json_schema(), "strict": False},
}


def chat(c: TestClient, **body: Any) -> httpx.Response:
    return c.post("/v1/chat/completions", json={"model": "gpt-4o", **body})


def lc_messages(body_messages: list[dict[str, Any]]) -> list[BaseMessage]:
    return to_langchain(body_messages)


def expected_usage(
    body_messages: list[dict], tools: list[dict], reply: AIMessage, cached: int = 0
) -> dict:
    prompt = count_messages(lc_messages(body_messages), tools)
    completion = count_reply(reply)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


# shapes -----------------------------------------------------------------------------------------


def test_models_lists_what_each_role_stands_for_and_scripted() -> None:
    r = client().get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gpt-4o", "gpt-4o-mini", "scripted"]
    assert all(m["object"] == "model" for m in body["data"])
    assert client().get("/v1/models/gpt-4o-mini").json()["id"] == "gpt-4o-mini"
    assert client().get("/v1/models/nope").status_code == 404


def test_tools_and_tool_choice_give_a_tool_call_with_json_string_arguments() -> None:
    msgs = planner_messages()
    r = chat(
        client(),
        model="my-local-model",
        messages=msgs,
        tools=[PLAN_TOOL],
        tool_choice={"type": "function", "function": {"name": "Plan"}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "my-local-model"  # the requested name, whatever it is
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant" and message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "Plan"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == PLAN
    reply = AIMessage(content="", tool_calls=[{"name": "Plan", "args": PLAN, "id": call["id"]}])
    assert body["usage"] == expected_usage(msgs, [PLAN_TOOL], reply)


def test_forced_tool_is_the_one_called_even_when_not_first() -> None:
    r = chat(
        client(),
        messages=planner_messages(),
        tools=[tool("other", x="string"), PLAN_TOOL],
        tool_choice={"type": "function", "function": {"name": "Plan"}},
    )
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "Plan"


@pytest.mark.parametrize("fmt", [PLAN_FORMAT, {"type": "json_object"}])
def test_response_format_gives_the_structured_reply_as_json_content(fmt: dict) -> None:
    msgs = planner_messages()
    r = chat(client(), messages=msgs, response_format=fmt)
    assert r.status_code == 200, r.text
    body = r.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    content = choice["message"]["content"]
    assert json.loads(content) == PLAN
    Plan.model_validate_json(content)
    assert body["usage"] == expected_usage(msgs, [], AIMessage(content=content))


def test_replanner_review_number_picks_the_scenario_entry() -> None:
    first = chat(client(), messages=replanner_messages(1), response_format={"type": "json_object"})
    second = chat(client(), messages=replanner_messages(2), response_format={"type": "json_object"})
    assert json.loads(first.json()["choices"][0]["message"]["content"])["action"] == "replan"
    decision = ReplanDecision.model_validate_json(second.json()["choices"][0]["message"]["content"])
    assert decision.action == "finish" and "Gear" in (decision.response or "")


def test_executor_plays_its_step_turn_by_turn() -> None:
    msgs = executor_messages("s1")
    r = chat(client(), model="gpt-4o-mini", messages=msgs, tools=EXECUTOR_TOOLS)
    body = r.json()
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "sql_query"
    assert "sqlite_master" in json.loads(call["function"]["arguments"])["query"]
    reply = AIMessage(
        content="",
        tool_calls=[
            {
                "name": "sql_query",
                "args": json.loads(call["function"]["arguments"]),
                "id": call["id"],
            }
        ],
    )
    assert body["usage"] == expected_usage(msgs, EXECUTOR_TOOLS, reply)

    msgs += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "orders(id, ...)"},
    ]
    r = chat(client(), model="gpt-4o-mini", messages=msgs, tools=EXECUTOR_TOOLS)
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    text = body["choices"][0]["message"]["content"]
    assert text == "Tables and their columns:\norders(id, ...)"
    assert body["usage"] == expected_usage(msgs, EXECUTOR_TOOLS, AIMessage(content=text))


def test_tool_messages_get_their_name_from_the_assistant_call_they_answer() -> None:
    # s2's last turn reports the last real tool result: flag_surprise's acknowledgement is told
    # apart by name, which only the assistant message's tool call carries over HTTP.
    def call(i: int, name: str, args: dict) -> dict[str, Any]:
        fn = {"name": name, "arguments": json.dumps(args)}
        return {"id": f"call_{i}", "type": "function", "function": fn}

    msgs = executor_messages("s2") + [
        {"role": "assistant", "content": "", "tool_calls": [call(1, "sql_query", {"query": "Q"})]},
        {"role": "tool", "tool_call_id": "call_1", "content": "[]"},
        {"role": "assistant", "tool_calls": [call(2, "flag_surprise", {"reason": "empty"})]},
        {"role": "tool", "tool_call_id": "call_2", "content": "Noted; the replanner will see it."},
    ]
    lc = lc_messages(msgs)
    assert [getattr(m, "name", None) for m in lc[-3::2]] == ["sql_query", "flag_surprise"]
    r = chat(client(), messages=msgs, tools=EXECUTOR_TOOLS)
    assert r.json()["choices"][0]["message"]["content"] == (
        "The Q3 revenue query returned no rows: []"
    )


def test_content_parts_are_read_as_text() -> None:
    msgs = planner_messages()
    msgs[1]["content"] = [
        {"type": "text", "text": "Which category "},
        {"type": "text", "text": "?"},
    ]
    assert lc_messages(msgs)[1].content == "Which category ?"
    assert chat(client(), messages=msgs, response_format=PLAN_FORMAT).status_code == 200


# streaming --------------------------------------------------------------------------------------


def sse_events(r: httpx.Response) -> list[Any]:
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), blocks
    payloads = [b[len("data: ") :] for b in blocks]
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def test_stream_with_tool_calls_and_usage() -> None:
    msgs = planner_messages()
    r = chat(
        client(),
        messages=msgs,
        tools=[PLAN_TOOL],
        tool_choice={"type": "function", "function": {"name": "Plan"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = sse_events(r)
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *body, last, usage_chunk = chunks
    assert all(c["usage"] is None for c in body + [last])
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    deltas = [d for c in body for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["id"] and deltas[0]["function"]["name"] == "Plan"
    assert len(deltas) > 2  # the arguments arrive in pieces
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(arguments) == PLAN
    reply = AIMessage(content="", tool_calls=[{"name": "Plan", "args": PLAN, "id": "x"}])
    assert usage_chunk["usage"] == expected_usage(msgs, [PLAN_TOOL], reply)


def test_stream_with_content_and_no_usage_unless_asked() -> None:
    r = chat(client(), messages=planner_messages(), response_format=PLAN_FORMAT, stream=True)
    chunks = sse_events(r)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert json.loads(text) == PLAN
    assert sum(bool(c["choices"][0]["delta"].get("content")) for c in chunks) > 2


# errors -----------------------------------------------------------------------------------------


def scenario_file(tmp_path: Path, executor: dict[str, list[dict]]) -> str:
    path = tmp_path / "openai_errors.json"
    path.write_text(
        json.dumps(
            {
                "name": "errors",
                "goal": "g",
                "planner": {"steps": [{"id": "s1", "description": "d", "depends_on": []}]},
                "executor": executor,
                "replanner": [],
            }
        )
    )
    return str(path)


def test_a_missing_reply_is_a_400_naming_scenario_role_and_step(tmp_path: Path) -> None:
    c = client(scenario_file(tmp_path, {"s1": []}))
    r = chat(c, messages=executor_messages("s1", attempt=2), tools=EXECUTOR_TOOLS)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "scenario_has_no_reply"
    assert "'errors'" in error["message"] and "executor" in error["message"]
    assert "'s1#2'" in error["message"]
    assert error["planexec"] == {
        "scenario": "errors",
        "role": "executor",
        "step": "s1",
        "attempt": 2,
    }

    r = chat(c, messages=replanner_messages(1), response_format=PLAN_FORMAT)
    assert r.status_code == 400 and "replanner" in r.json()["error"]["message"]

    r = chat(c, messages=[{"role": "user", "content": "hello"}])
    assert r.status_code == 400 and "cannot tell which role" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("turn", "status", "kind"),
    [
        (
            {"error": "quota", "message": "You exceeded your current quota"},
            429,
            "insufficient_quota",
        ),
        (
            {"error": "quota", "message": "Rate limit reached for requests"},
            429,
            "rate_limit_exceeded",
        ),
        ({"error": "server", "message": "The engine is down"}, 500, "server_error"),
    ],
)
def test_scripted_provider_errors_map_to_status_codes(
    tmp_path: Path, turn: dict, status: int, kind: str
) -> None:
    c = client(scenario_file(tmp_path, {"s1": [turn]}))
    r = chat(c, messages=executor_messages("s1"), tools=EXECUTOR_TOOLS)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == kind and error["message"] == turn["message"]
    assert error["planexec"]["step"] == "s1"
    assert c.get("/_planexec/usage").json()["usage"] == {}  # a failed call has no usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": ""}]},
            "messages[0].tool_call_id",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [PLAN_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "Other"}},
            },
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "xml"},
            },
            "response_format",
        ),
    ],
)
def test_malformed_requests_are_400_with_the_param(body: dict, param: str) -> None:
    r = client().post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == param


def assistant_calling(*tool_calls: Any) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": "", "tool_calls": list(tool_calls)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"messages": [{"role": "user", "content": "x"}], "stream_options": "on"},
            "stream_options",
        ),
        ({"messages": assistant_calling("call_1")}, "messages[0].tool_calls[0]"),
        (
            {"messages": assistant_calling({"id": "c", "function": "f"})},
            "messages[0].tool_calls[0]",
        ),
        (
            {"messages": assistant_calling({"function": {"name": "f", "arguments": 7}})},
            "messages[0].tool_calls[0]",
        ),
        (
            {"messages": assistant_calling({"function": {"name": "f", "arguments": "[1]"}})},
            "messages[0].tool_calls[0]",
        ),
        (
            {"messages": [{"role": "assistant", "content": "", "tool_calls": {"id": "c"}}]},
            "messages[0].tool_calls",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [PLAN_TOOL],
                "tool_choice": {"type": "function", "function": "Plan"},
            },
            "tool_choice",
        ),
    ],
)
def test_ill_typed_fields_are_a_400_not_a_crash(body: dict, param: str) -> None:
    """A caller can send any JSON: a field of the wrong type is the caller's error (400, which
    clients do not retry), not a server crash (a plain-text 500, which OpenAI clients retry)."""
    r = client().post("/v1/chat/completions", json={"model": "m", **body})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == param


def test_a_body_that_is_not_json_is_a_400() -> None:
    r = client().post("/v1/chat/completions", content=b"{nope")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_unknown_scenario_is_refused_when_the_app_is_made() -> None:
    with pytest.raises(ScenarioError, match="no scenario named"):
        create_app("no-such-scenario")


# faults -----------------------------------------------------------------------------------------


def test_first_requests_get_429_then_503_with_retry_after() -> None:
    c = client(fail_first_429=2, fail_first_503=1, retry_after_ms=5)
    statuses = []
    for _ in range(4):
        r = chat(c, messages=planner_messages(), response_format=PLAN_FORMAT)
        statuses.append(r.status_code)
        if r.status_code != 200:
            assert r.headers["retry-after-ms"] == "5"
    assert statuses == [429, 429, 503, 200]
    assert chat(c, messages=planner_messages()).status_code == 200
    first = client(fail_first_429=1)
    error = chat(first, messages=planner_messages()).json()["error"]
    assert error["type"] == "rate_limit_exceeded" and error["code"] == "rate_limit_exceeded"
    snapshot = c.get("/_planexec/usage").json()
    assert snapshot["requests"] == 5
    assert snapshot["statuses"] == {"200": 2, "429": 2, "503": 1}


def test_bad_json_first_breaks_the_schema_once_then_the_scenario_plays_on() -> None:
    c = client(bad_json_first=True)
    msgs = planner_messages()
    # Executor requests are not structured: they are not touched.
    assert (
        "tool_calls"
        in chat(c, messages=executor_messages(), tools=EXECUTOR_TOOLS).json()["choices"][0][
            "message"
        ]
    )
    first = chat(c, messages=msgs, response_format=PLAN_FORMAT).json()
    bad = first["choices"][0]["message"]["content"]
    assert bad == BAD_JSON
    with pytest.raises(ValueError):
        Plan.model_validate_json(bad)
    assert first["usage"] == expected_usage(msgs, [], AIMessage(content=BAD_JSON))
    # The client's retry carries the bad reply and the complaint; the scenario's own first reply
    # (its only planner reply) comes back, and the prompt counts every message sent.
    retry = msgs + [
        {"role": "assistant", "content": bad},
        {"role": "user", "content": "That reply was rejected: ... Reply again."},
    ]
    second = chat(c, messages=retry, response_format=PLAN_FORMAT).json()
    content = second["choices"][0]["message"]["content"]
    assert json.loads(content) == PLAN
    assert second["usage"] == expected_usage(retry, [], AIMessage(content=content))
    usage = c.get("/_planexec/usage").json()
    assert usage["usage"]["planner"]["calls"] == 2
    assert usage["kinds"] == {"json_schema": 2, "tools": 1}


def test_bad_json_first_with_function_calling_breaks_the_tool_arguments() -> None:
    c = client(bad_json_first=True)
    forced = {"type": "function", "function": {"name": "Plan"}}
    msgs = planner_messages()
    first = chat(c, messages=msgs, tools=[PLAN_TOOL], tool_choice=forced).json()
    (call,) = first["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == json.loads(BAD_JSON)
    retry = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "That reply was rejected: ..."},
    ]
    second = chat(c, messages=retry, tools=[PLAN_TOOL], tool_choice=forced).json()
    (good,) = second["choices"][0]["message"]["tool_calls"]
    assert json.loads(good["function"]["arguments"]) == PLAN
    assert c.get("/_planexec/usage").json()["kinds"] == {"function_calling": 2}


def test_usage_ledger_sums_per_role_and_resets() -> None:
    c = client()
    totals: dict[str, dict[str, int]] = {}
    for role, body in [
        ("planner", {"messages": planner_messages(), "response_format": PLAN_FORMAT}),
        ("executor", {"messages": executor_messages(), "tools": EXECUTOR_TOOLS}),
        ("executor", {"messages": executor_messages("s5"), "tools": EXECUTOR_TOOLS}),
        ("replanner", {"messages": replanner_messages(1), "response_format": PLAN_FORMAT}),
    ]:
        usage = chat(c, **body).json()["usage"]
        t = totals.setdefault(
            role,
            {
                "calls": 0,
                "prompt_tokens": 0,
                "cached_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
            },
        )
        t["calls"] += 1
        for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
            t[k] += usage[k]
        t["cached_tokens"] += usage["prompt_tokens_details"]["cached_tokens"]
    snapshot = c.get("/_planexec/usage").json()
    assert snapshot["usage"] == totals
    assert snapshot["scenario"] == "openai_demo_fast"
    assert c.post("/_planexec/reset").json()["usage"] == {}
    assert c.get("/_planexec/usage").json()["requests"] == 0


def test_slow_replies_do_not_block_other_requests(tmp_path: Path) -> None:
    slow = {"content": "done", "latency": 0.4}
    path = scenario_file(tmp_path, {f"s{i}": [slow] for i in range(1, 5)})
    app = create_app(path)

    async def four_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/v1/chat/completions",
                        json={"model": "m", "messages": executor_messages(f"s{i}")},
                    )
                    for i in range(1, 5)
                )
            )

    started = time.perf_counter()
    replies = asyncio.run(four_at_once())
    elapsed = time.perf_counter() - started
    assert [r.json()["choices"][0]["message"]["content"] for r in replies] == ["done"] * 4
    assert elapsed < 1.2, f"4 requests of 0.4 s took {elapsed:.2f} s: they ran one at a time"


# the command ------------------------------------------------------------------------------------


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """planexec (test copy)."""

    register(app)
    return app


def test_serve_scenario_command_has_the_fault_flags() -> None:
    result = CliRunner().invoke(cli_app(), ["serve-scenario", "--help"])
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--fail-first-429", "--fail-first-503", "--bad-json-first"):
        assert flag in result.output


def test_serve_scenario_refuses_an_unknown_scenario_with_exit_4() -> None:
    result = CliRunner().invoke(cli_app(), ["serve-scenario", "no-such-scenario"])
    assert result.exit_code == 4
    assert "no scenario named 'no-such-scenario'" in result.output


def test_banner_starts_with_the_base_url_and_says_how_to_run() -> None:
    text = banner("demo", "http://127.0.0.1:8123/v1", ServerFaults(fail_first_429=2))
    lines = text.splitlines()
    assert lines[0] == "OPENAI_BASE_URL=http://127.0.0.1:8123/v1"
    assert "export OPENAI_BASE_URL=http://127.0.0.1:8123/v1" in text
    assert "--planner-model openai:gpt-4o --executor-model openai:gpt-4o-mini" in text
    # The workspace `planexec demo` made, as docs/openai-endpoint.md runs it.
    assert "--workspace .planexec/demo --sql-database .planexec/demo-shop.sqlite" in text
    assert "fail_first_429=2" in text


def test_command_line_flags_become_server_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.scripted.server as server

    calls: list[tuple] = []
    monkeypatch.setattr(server, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    flags = ["--fail-first-429", "1", "--fail-first-503", "2", "--bad-json-first"]
    result = CliRunner().invoke(
        cli_app(), ["serve-scenario", "demo", "--host", "::1", "--port", "0", *flags]
    )
    assert result.exit_code == 0, result.output
    assert server.main(["demo", "--port", "0", *flags]) == 0
    expected = ServerFaults(fail_first_429=1, fail_first_503=2, bad_json_first=True)
    (cmd_args, cmd_kwargs), (main_args, main_kwargs) = calls
    assert cmd_args == ("demo", "::1", 0) and cmd_kwargs["faults"] == expected
    assert main_args == ("demo", "127.0.0.1", 0) and main_kwargs["faults"] == expected


def test_an_unexpected_error_is_a_500_in_openai_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.scripted.server as server

    def broken(*args: Any, **kwargs: Any) -> AIMessage:
        raise RuntimeError("scenario file vanished")

    monkeypatch.setattr(server, "prepare", broken)
    r = chat(client(), messages=planner_messages())
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "RuntimeError: scenario file vanished",
        "type": "server_error",
        "param": None,
        "code": None,
    }
