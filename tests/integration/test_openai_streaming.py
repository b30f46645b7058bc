"""Streaming over real HTTP with the real clients: the scenario server sends SSE chunk by chunk,
each after its simulated generation time, usage in a final chunk when asked; and a planexec run
through `langchain-openai` starts its first step while the plan is still arriving."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.context import Context
from app.scripted.server import RunningServer, serving
from graphs.plan_execute import build_graph
from graphs.plan_text import parse_plan_text
from prompts import render

pytestmark = pytest.mark.integration

FIRST_TOKEN, PER_TOKEN = 0.3, 0.01


def fanout_scenario(path: Path) -> Path:
    steps = [
        {"id": f"s{i}", "description": f"Look up the price of item {i}.", "depends_on": []}
        for i in range(1, 7)
    ]
    steps.append({"id": "total", "description": "Add the prices.", "depends_on": ["s1", "s2"]})
    script = {
        "name": "http_fanout",
        "goal": "Price six items and add them up.",
        "tools": [],
        "latency": {"planner": FIRST_TOKEN, "executor": 0.05, "replanner": 0.05},
        "token_latency": {"planner": PER_TOKEN},
        "planner": {"steps": steps},
        "executor": {
            **{f"s{i}": [{"content": f"item {i}: {i} EUR"}] for i in range(1, 7)},
            "total": [{"content": "21 EUR"}],
        },
        "replanner": [{"action": "finish", "reason": "all priced", "response": "21 EUR"}],
    }
    path.write_text(json.dumps(script), encoding="utf-8")
    return path


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    for key in [k for k in os.environ if k.startswith(("OPENAI_", "PLANEXEC_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with serving(str(fanout_scenario(tmp_path / "fanout.json"))) as running:
        monkeypatch.setenv("OPENAI_BASE_URL", running.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "not-needed")
        yield running


@contextmanager
def serving_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: dict[str, Any]
) -> Iterator[RunningServer]:
    """`planexec serve-scenario` playing `script`, with the OpenAI client pointed at it."""
    path = tmp_path / f"{script['name']}.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    for key in [k for k in os.environ if k.startswith(("OPENAI_", "PLANEXEC_"))]:
        monkeypatch.delenv(key)
    with serving(str(path)) as running:
        monkeypatch.setenv("OPENAI_BASE_URL", running.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "not-needed")
        yield running


def openai_context(tools: list[str], workspace: Path) -> Context:
    return Context.of(
        planner_model="openai:gpt-4o",
        executor_model="openai:gpt-4o-mini",
        replanner_model="openai:gpt-4o",
        tools=tools,
        workspace=str(workspace),
    )


def planner_messages() -> list[dict[str, Any]]:
    system = render("planner", max_steps=12, tools="none")
    return [{"role": "system", "content": system}, {"role": "user", "content": "Price them."}]


def test_sse_arrives_chunk_by_chunk_with_usage_last(server: RunningServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    start = time.monotonic()
    arrivals: list[float] = []
    chunks = []
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=planner_messages(),
        response_format={"type": "json_object"},
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        arrivals.append(time.monotonic() - start)
        chunks.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage

    assert len(json.loads(text)["steps"]) == 7
    assert chunks[-1].choices == [] and usage is not None, "usage comes in a last, empty chunk"
    assert all(c.usage is None for c in chunks[:-1])
    assert usage.completion_tokens > 50
    generation = PER_TOKEN * usage.completion_tokens
    content_arrivals = [t for t, c in zip(arrivals, chunks, strict=True) if c.choices]
    # Lower bounds only (each is a sum of the server's sleeps): no flakiness under load.
    assert content_arrivals[1] >= FIRST_TOKEN, "no content before the time to first token"
    assert arrivals[-1] - content_arrivals[1] >= generation * 0.8, "the rest came chunk by chunk"
    assert len(chunks) > 20


def test_langchain_openai_streams_with_usage(server: RunningServer) -> None:
    model = ChatOpenAI(model="gpt-4o", base_url=server.base_url, api_key="x", stream_usage=True)
    messages = [
        SystemMessage(planner_messages()[0]["content"]),
        HumanMessage(planner_messages()[1]["content"]),
    ]
    pieces = list(model.stream(messages))
    whole = pieces[0]
    for piece in pieces[1:]:
        whole += piece
    # Asked with no response format, the scenario's plan comes as plan lines.
    assert len(pieces) > 10
    assert parse_plan_text(str(whole.content))[0].id == "s1"
    served = server.usage()["usage"]["planner"]
    assert whole.usage_metadata["output_tokens"] == served["completion_tokens"]
    assert whole.usage_metadata["input_tokens"] == served["prompt_tokens"]


def test_a_run_over_http_starts_steps_while_the_plan_streams(
    server: RunningServer, tmp_path: Path
) -> None:
    ctx = Context.of(
        planner_model="openai:gpt-4o",
        executor_model="openai:gpt-4o-mini",
        replanner_model="openai:gpt-4o",
        tools=[],
        workspace=str(tmp_path / "ws"),
        max_concurrency=8,
    )
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "http-stream"}}
    events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
    state = graph.get_state(config).values
    plan_at = next(e["at"] for e in events if e["event"] == "plan")
    first_start = min(e["at"] for e in events if e["event"] == "step_started")

    assert state["status"] == "done", state.get("reason")
    assert first_start < plan_at - 0.3, "s1 started long before the last step arrived"
    served = server.usage()["usage"]
    assert state["usage"]["planner"]["output_tokens"] == served["planner"]["completion_tokens"]
    assert state["usage"]["planner"]["input_tokens"] == served["planner"]["prompt_tokens"]


def test_a_plan_stream_the_server_cuts_is_asked_again_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closes the connection mid-stream, after s1's line (no `[DONE]`), once:
    langchain-openai raises a connection error, the planner node runs again, and s1, which
    started from the cut stream, writes its line once."""
    log = lambda line: {  # noqa: E731
        "tool_calls": [
            {"name": "write_file", "args": {"path": "log.txt", "append": True, "content": line}}
        ]
    }
    long = "Log s2, with a description long enough that its line arrives well after s1's."
    script = {
        "name": "http_drop",
        "goal": "Log two lines.",
        "tools": ["write_file"],
        "token_latency": {"planner": 0.02},
        "planner": {
            "steps": [{"id": "s1", "description": "Log s1."}, {"id": "s2", "description": long}],
            "drop_at": 0.8,
            "drops": 1,
        },
        "executor": {
            "s1": [log("s1\n"), {"content": "logged s1"}],
            "s2": [log("s2\n"), {"content": "logged s2"}],
        },
        "replanner": [{"action": "finish", "reason": "done", "response": "Both logged."}],
    }
    with serving_script(tmp_path, monkeypatch, script) as running:
        ctx = openai_context(["write_file"], tmp_path / "ws")
        graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
        config = {"configurable": {"thread_id": "http-drop"}}
        events = list(graph.stream({"goal": "g"}, config, context=ctx, stream_mode="custom"))
        served = running.usage()["usage"]
    state = graph.get_state(config).values

    assert state["status"] == "done", state.get("reason")
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"
    assert served["planner"]["calls"] == 2, "the cut stream, then the whole one"
    assert [e["step_id"] for e in events if e["event"] == "step_started"].count("s1") == 1
    assert state["usage"]["planner"]["calls"] == 1, "a cut stream reports no usage"


def test_a_file_name_that_is_not_utf8_reaches_the_model_as_text_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python reads an undecodable file name as a lone surrogate, which no request can encode:
    langchain-openai raised UnicodeEncodeError on the step's next call and the run failed. Data
    blocks write it as U+FFFD."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("hi", encoding="utf-8")
    with open(bytes(ws / "bad") + b"\xff.txt", "wb") as handle:
        handle.write(b"hi")
    script = {
        "name": "http_surrogate",
        "goal": "List the files.",
        "tools": ["list_files"],
        "planner": {"steps": [{"id": "s1", "description": "List the files."}]},
        "executor": {
            "s1": [
                {"tool_calls": [{"name": "list_files", "args": {"path": "."}}]},
                {"content": "{last_tool_result}"},
            ]
        },
        "replanner": [{"action": "finish", "reason": "done", "response": "Listed."}],
    }
    with serving_script(tmp_path, monkeypatch, script):
        ctx = openai_context(["list_files"], ws)
        graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
        config = {"configurable": {"thread_id": "http-surrogate"}}
        state = graph.invoke({"goal": "List the files."}, config, context=ctx)

    assert state["status"] == "done", state.get("reason")
    assert state["results"]["s1"]["status"] == "done", state["results"]["s1"]["error"]
    assert state["results"]["s1"]["result"] == "bad\ufffd.txt\nnotes.txt"
