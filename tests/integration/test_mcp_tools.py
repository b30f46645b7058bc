"""MCP tools from real MCP server processes (the `mcp` package's FastMCP, tests/mcp_math_server.py)
over stdio and streamable HTTP, loaded with langchain-mcp-adapters and run by the executor."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from app.context import Context
from graphs.plan_execute import build_graph
from tests.helpers import clean_env
from tests.integration.conftest import _free_port
from tools import ToolSettings, build_tools, tool_names
from tools.mcp import MCPConfigError, mcp_tools

pytestmark = pytest.mark.integration

SERVER = Path(__file__).resolve().parents[1] / "mcp_math_server.py"


def stdio_servers() -> str:
    return json.dumps(
        {"math": {"transport": "stdio", "command": sys.executable, "args": [str(SERVER), "stdio"]}}
    )


def http_servers(url: str, name: str = "math") -> str:
    return json.dumps({name: {"transport": "streamable_http", "url": url}})


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The math server over streamable HTTP on a free port; its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "the MCP server exited"
                assert time.monotonic() < deadline, "the MCP server did not listen in time"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("transport", ["stdio", "streamable_http"])
def test_mcp_tools_are_named_by_server_and_run_from_sync_code(
    transport: str, http_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    servers = stdio_servers() if transport == "stdio" else http_servers(http_server)
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", servers)

    assert tool_names(["calculator", "mcp:math"]) == [
        "calculator",
        "math_add",
        "math_query",
        "math_slow_echo",
    ]
    [add] = build_tools(["mcp:math/add"], ToolSettings(tmp_path))
    assert add.invoke({"a": 2, "b": 40}) == "42"


def test_a_slow_mcp_call_ends_at_its_timeout(
    http_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", http_servers(http_server))
    monkeypatch.setattr("tools.mcp.MCP_CALL_TIMEOUT", 1.0)
    [echo] = build_tools(["mcp:math/slow_echo"], ToolSettings(tmp_path))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        echo.invoke({"text": "hi", "seconds": 30})
    assert time.monotonic() - started < 10


# One step that calls the MCP server's `add` and a tool imported by path, then reports.
SCRIPT = {
    "name": "mcp-and-imported",
    "goal": "Add two numbers and shout.",
    "planner": {"steps": [{"id": "s1", "description": "Add 2 and 40, shout.", "depends_on": []}]},
    "executor": {
        "s1": [
            {"tool_calls": [{"name": "math_add", "args": {"a": 2, "b": 40}}]},
            {"tool_calls": [{"name": "shout", "args": {"text": "the sum"}}]},
            {"content": "{last_tool_result}"},
        ]
    },
    "replanner": [{"action": "finish", "reason": "done", "response": "42"}],
}


def test_a_run_uses_mcp_and_imported_tools_like_built_in_ones(
    http_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", http_servers(http_server))
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT), encoding="utf-8")
    context = Context.every_role(
        f"scripted:{script}",
        tools=["mcp:math/add", "tests.custom_tools:shout"],
        workspace=str(tmp_path / "ws"),
    )

    state = build_graph(checkpointer=InMemorySaver()).invoke(
        {"goal": "Add two numbers and shout."},
        config={"configurable": {"thread_id": "mcp-1"}},
        context=context,
    )

    assert state["status"] == "done", state.get("reason")
    s1 = state["results"]["s1"]
    assert [c["name"] for c in s1["tool_calls"]] == ["math_add", "shout"]
    assert [c["output"] for c in s1["tool_calls"]] == ["42", "THE SUM"]


def test_an_mcp_call_that_does_not_answer_fails_its_step_at_the_tool_timeout(
    http_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The executor awaits an MCP tool's own coroutine, which has no deadline of its own: the
    run's tool_timeout_s ends it, and the step fails for the replanner."""
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", http_servers(http_server))
    script = tmp_path / "script.json"
    step = {"id": "s1", "tool": "math_slow_echo", "args": {"text": "hi", "seconds": 30}}
    script.write_text(
        json.dumps(
            {
                "name": "mcp-hang",
                "goal": "Echo slowly.",
                "planner": {"steps": [step]},
                "executor": {},
                "replanner": [{"action": "finish", "reason": "hung", "response": "no echo"}],
            }
        ),
        encoding="utf-8",
    )
    context = Context.every_role(
        f"scripted:{script}",
        tools=["mcp:math/slow_echo"],
        workspace=str(tmp_path / "ws"),
        tool_timeout_s=1.0,
    )
    started = time.monotonic()
    state = build_graph(checkpointer=InMemorySaver()).invoke(
        {"goal": "Echo slowly."}, config={"configurable": {"thread_id": "mcp-2"}}, context=context
    )
    assert time.monotonic() - started < 10
    s1 = state["results"]["s1"]
    assert s1["status"] == "failed"
    assert s1["error"] == "tool math_slow_echo did not answer within 1 s (tool_timeout_s)"
    assert state["response"] == "no echo"


def test_an_unreachable_mcp_server_fails_the_run_before_the_planner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/mcp"  # nothing listens there
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", http_servers(closed, name="gone"))
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT), encoding="utf-8")
    context = Context.every_role(f"scripted:{script}", tools=["calculator", "mcp:gone"])

    state = build_graph(checkpointer=InMemorySaver()).invoke(
        {"goal": "x"}, config={"configurable": {"thread_id": "mcp-2"}}, context=context
    )

    assert state["status"] == "failed"
    assert "MCP server 'gone' could not be reached" in state["reason"], state["reason"]
    assert "planner" not in state.get("usage", {}), "the planner was paid for"


def test_unknown_server_and_tool_are_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", stdio_servers())
    with pytest.raises(MCPConfigError, match="no MCP server 'maths'; configured servers: math"):
        mcp_tools("mcp:maths")
    with pytest.raises(MCPConfigError, match="has no tool 'mul'; it has add, query, slow_echo"):
        mcp_tools("mcp:math/mul")
    # A tool is chosen by its exact name: not by a suffix, nor by the prefixed name.
    for near_miss in ("echo", "dd", "math_add"):
        with pytest.raises(MCPConfigError, match=f"has no tool '{near_miss}'"):
            mcp_tools(f"mcp:math/{near_miss}")


def test_a_tool_named_like_a_built_in_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Server `sql` with a tool `query` would give `sql_query`: plans, allow-lists and reports
    would read it as the read-only SQL tool, so it is refused whether or not the built-in is
    in the run."""
    servers = json.loads(stdio_servers())
    monkeypatch.setenv("PLANEXEC_MCP_SERVERS", json.dumps({"sql": servers["math"]}))
    for entry in ("mcp:sql", "mcp:sql/query"):
        with pytest.raises(ValueError, match="'sql_query', the name of a built-in tool; name the"):
            tool_names([entry])
    assert tool_names(["mcp:sql/add"]) == ["sql_add"]
