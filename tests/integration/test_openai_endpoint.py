"""planexec against an OpenAI-compatible endpoint over real HTTP, with the real client.

The endpoint is `app.scripted.server` playing `tests/scenarios/openai_demo_fast.json` (the demo with
no latency) on a free 127.0.0.1 port; every role is an `openai:` model and `OPENAI_BASE_URL` points
at it, with no API key: the path a user with Ollama, vLLM or llama.cpp takes. The server counts
the usage of every reply per role; the run's state must record exactly the same.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

import app.scripted.server as server_module
import graphs.planner
import graphs.replanner
from app.runs.demo import demo_context, prepare_workspace
from app.scripted.scenarios import load_scenario
from app.scripted.server import RunningServer, ServerFaults, serving
from graphs.plan_execute import build_graph
from graphs.schemas import Plan, plan_problems
from graphs.structured import call_structured
from prompts import render
from tests.helpers import REPO, SCENARIOS, clean_env, cli
from tools.registry import DEFAULT_TOOLS

pytestmark = pytest.mark.integration

FAST = str(SCENARIOS / "openai_demo_fast.json")
GOAL = load_scenario(FAST).goal
MODELS = {
    "planner_model": "openai:gpt-4o",
    "executor_model": "openai:gpt-4o-mini",
    "replanner_model": "openai:gpt-4o",
}
STRUCTURED_KINDS = ("json_schema", "json_object", "function_calling")


@pytest.fixture(autouse=True)
def openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key, no base URL but the test's, no PLANEXEC_* from the shell, no tracing."""
    for key in list(os.environ):
        if key.startswith(("OPENAI_", "PLANEXEC_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.setenv("LANGCHAIN_TRACING_V2", "false")


@contextmanager
def endpoint(monkeypatch: pytest.MonkeyPatch, **faults: Any) -> Iterator[RunningServer]:
    """The scenario server in a background thread, and OPENAI_BASE_URL pointing at it."""
    with serving(FAST, faults=ServerFaults(**faults)) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


def run_demo(tmp_path: Path, **context: Any) -> dict[str, Any]:
    ctx = demo_context(tmp_path / "ws", FAST, **MODELS, **context)
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "openai-endpoint"}}
    return graph.invoke({"goal": GOAL}, config=config, context=ctx)


def served_usage(usage: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The server's per-role totals in the state's terms."""
    return {
        role: {
            "calls": u["calls"],
            "input_tokens": u["prompt_tokens"],
            "cached_input_tokens": u["cached_tokens"],
            "output_tokens": u["completion_tokens"],
        }
        for role, u in usage["usage"].items()
    }


def recorded_usage(state_usage: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        role: {k: u[k] for k in ("calls", "input_tokens", "cached_input_tokens", "output_tokens")}
        for role, u in state_usage.items()
    }


def assert_done(state: dict[str, Any], tmp_path: Path) -> None:
    assert state["status"] == "done", state.get("reason")
    assert "Gear" in state["response"]
    assert (tmp_path / "ws" / "report.md").is_file()


class FunctionCallingChatOpenAI(ChatOpenAI):
    """ChatOpenAI whose structured output goes through a forced tool call."""

    def with_structured_output(self, schema: Any = None, **kwargs: Any) -> Any:
        kwargs["method"] = "function_calling"
        return super().with_structured_output(schema, **kwargs)


def use_function_calling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planner and replanner ask for structured output by function calling (executors are
    unchanged: they call tools either way)."""

    def load(ctx: Any, role: str) -> ChatOpenAI:
        spec = getattr(ctx, f"{role}_model")
        return FunctionCallingChatOpenAI(model=spec.partition(":")[2], api_key="not-needed")

    monkeypatch.setattr(graphs.planner, "role_model", load)
    monkeypatch.setattr(graphs.replanner, "role_model", load)


# the demo, end to end ---------------------------------------------------------------------------


def test_demo_runs_over_http_and_usage_matches_what_the_server_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with endpoint(monkeypatch) as server:
        started = time.perf_counter()
        state = run_demo(tmp_path)
        elapsed = time.perf_counter() - started
        served = server.usage()
    assert_done(state, tmp_path)
    assert recorded_usage(state["usage"]) == served_usage(served)
    assert served["statuses"] == {"200": sum(u["calls"] for u in state["usage"].values())}
    # The plan and the end-of-run decision are text (plan lines); the replan after the demo's
    # surprise is langchain-openai's default structured output, json_schema (response_format).
    replans = state["usage"]["replanner"]["calls"] - 1
    plain = state["usage"]["planner"]["calls"] + 1
    assert served["kinds"] == {"plain": plain, "json_schema": replans, "tools": 15}
    # The response's model name is what each role's calls are priced as.
    assert state["usage"]["planner"]["model"] == "gpt-4o"
    assert state["usage"]["executor"]["model"] == "gpt-4o-mini"
    assert state["usage"]["executor"]["cost_usd"] is not None
    assert elapsed < 20


def test_cached_prompt_tokens_reach_planexec_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With every default tool offered, the executor's tool schemas and instructions pass 1,024
    # tokens: its prompts share a cacheable prefix, which the server reports as OpenAI does
    # (usage.prompt_tokens_details.cached_tokens) and langchain-openai hands to planexec.
    with endpoint(monkeypatch) as server:
        state = run_demo(tmp_path, tools=list(DEFAULT_TOOLS))
        served = server.usage()
    assert_done(state, tmp_path)
    assert state["usage"]["executor"]["cached_input_tokens"] >= 1024
    assert recorded_usage(state["usage"]) == served_usage(served)


def test_demo_runs_with_structured_output_by_function_calling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_function_calling(monkeypatch)
    with endpoint(monkeypatch) as server:
        state = run_demo(tmp_path, plan_format="json")  # every plan and decision structured
        served = server.usage()
    assert_done(state, tmp_path)
    assert recorded_usage(state["usage"]) == served_usage(served)
    assert served["kinds"] == {"function_calling": 3, "tools": 15}


# a misbehaving endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_bad_json_first_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """json_schema is langchain-openai's default for structured output."""
    if method == "function_calling":
        use_function_calling(monkeypatch)
    with endpoint(monkeypatch, bad_json_first=True) as server:
        state = run_demo(tmp_path, plan_format="json")  # the plan is the first structured reply
        served = server.usage()
    assert_done(state, tmp_path)
    assert state["usage"]["planner"]["calls"] == 2
    assert recorded_usage(state["usage"]) == served_usage(served)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_call_structured_feeds_a_bad_reply_back(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    cls = ChatOpenAI if method == "json_schema" else FunctionCallingChatOpenAI
    messages = [
        SystemMessage(render("planner", max_steps=12, tools="sql_query")),
        HumanMessage(GOAL),
    ]
    with endpoint(monkeypatch, bad_json_first=True) as server:
        model = cls(model="gpt-4o", base_url=server.base_url, api_key="not-needed")
        out = call_structured(
            model,
            Plan,
            messages,
            role="planner",
            model_name="openai:gpt-4o",
            validate=lambda p: plan_problems(p.steps, max_steps=12),
            call=0,
        )
        served = server.usage()
    assert out.attempts == 2 and isinstance(out.value, Plan)
    assert [s.id for s in out.value.steps] == ["s1", "s2", "s3", "s4"]
    assert recorded_usage(out.usage) == served_usage(served)


@pytest.mark.parametrize("faults", [{"fail_first_429": 2}, {"fail_first_503": 2}])
def test_the_clients_own_retries_carry_a_run_through_early_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faults: dict[str, int]
) -> None:
    with endpoint(monkeypatch, **faults) as server:
        state = run_demo(tmp_path)
        served = server.usage()
    assert_done(state, tmp_path)
    status = "429" if "fail_first_429" in faults else "503"
    assert served["statuses"][status] == 2
    assert recorded_usage(state["usage"]) == served_usage(served)  # failed tries cost nothing
    assert state["usage"]["planner"]["calls"] == 1


def test_an_endpoint_that_always_says_429_ends_the_run_failed_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with endpoint(monkeypatch, fail_first_429=10**9) as server:
        state = run_demo(tmp_path)  # no exception escapes
        served = server.usage()
    assert state["status"] == "failed"
    assert "planner model 'openai:gpt-4o' failed" in state["reason"]
    assert "429" in state["reason"] and "Rate limit" in state["reason"]
    assert served["statuses"] == {"429": 3}  # the planner node's 3 attempts (RetryPolicy)
    assert not state.get("usage")
    assert not (tmp_path / "ws" / "report.md").exists()


# streaming --------------------------------------------------------------------------------------


@tool
def sql_query(query: str) -> str:
    """Run a read-only SQL query."""
    return "[]"


@tool
def flag_surprise(reason: str) -> str:
    """Tell the planner the world is not as the plan assumed."""
    return "Noted."


def executor_messages(step: str) -> list[Any]:
    return [
        SystemMessage(render("executor", max_tool_calls=6)),
        HumanMessage(
            render(
                "executor_task",
                goal=GOAL,
                step_id=step,
                attempt=1,
                description="List the tables.",
                dependencies="(none)",
            )
        ),
    ]


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_a_streaming_client_gets_tool_calls_content_and_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with endpoint(monkeypatch) as server:
        model = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=server.base_url,
            api_key="not-needed",
            streaming=True,
            stream_usage=True,  # off by default for a custom base URL
        )
        bound = model.bind_tools([sql_query, flag_surprise])
        messages = executor_messages("s1")

        first = bound.invoke(messages)
        assert [c["name"] for c in first.tool_calls] == ["sql_query"]
        assert "sqlite_master" in first.tool_calls[0]["args"]["query"]
        after_first = server.usage()["usage"]["executor"]
        assert first.usage_metadata["input_tokens"] == after_first["prompt_tokens"]
        assert first.usage_metadata["output_tokens"] == after_first["completion_tokens"]

        messages += [
            first,
            ToolMessage("orders, products", tool_call_id=first.tool_calls[0]["id"]),
        ]
        chunks = list(bound.stream(messages))
        assert len([c for c in chunks if c.content]) > 1  # the text arrived in pieces
        final = chunks[0]
        for c in chunks[1:]:
            final += c
        assert final.content == "Tables and their columns:\norders, products"
        assert not final.tool_calls
        total = server.usage()["usage"]["executor"]
        assert final.usage_metadata["input_tokens"] == (
            total["prompt_tokens"] - after_first["prompt_tokens"]
        )
        assert final.usage_metadata["output_tokens"] == (
            total["completion_tokens"] - after_first["completion_tokens"]
        )

        # Structured output streamed (the client's chat.completions.stream helper).
        structured = model.with_structured_output(Plan, include_raw=True)
        planner = [
            SystemMessage(render("planner", max_steps=12, tools="sql_query")),
            HumanMessage(GOAL),
        ]
        reply = structured.invoke(planner)
        assert reply["parsing_error"] is None
        assert [s.id for s in reply["parsed"].steps] == ["s1", "s2", "s3", "s4"]
        assert (
            reply["raw"].usage_metadata["input_tokens"]
            == (server.usage()["usage"]["planner"]["prompt_tokens"])
        )


# the CLI and the server as processes ------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(base_url: str) -> dict[str, str]:
    env = clean_env()  # strips OPENAI_*; put back only the base URL (no key)
    env["OPENAI_BASE_URL"] = base_url
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        cli(*args, "--json"), cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def demo_run_args(tmp_path: Path) -> list[str]:
    db = prepare_workspace(tmp_path / "ws")
    return [
        "run",
        GOAL,
        "--planner-model",
        MODELS["planner_model"],
        "--executor-model",
        MODELS["executor_model"],
        "--replanner-model",
        MODELS["replanner_model"],
        "--tools",
        "sql_query,calculator,write_file",
        "--workspace",
        str(tmp_path / "ws"),
        "--sql-database",
        str(db),
        "--db",
        "memory://",
    ]


def test_planexec_run_cli_against_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with endpoint(monkeypatch) as server:
        code, events, output = run_cli(
            *demo_run_args(tmp_path), cwd=tmp_path, env=cli_env(server.base_url)
        )
        served = server.usage()
    assert code == 0, output
    assert "Traceback" not in output
    result = events[-1]
    assert result["event"] == "result" and result["status"] == "done"
    assert "Gear" in result["response"]
    assert recorded_usage(result["usage"]) == served_usage(served)
    assert (tmp_path / "ws" / "report.md").is_file()


@pytest.fixture(scope="module")
def refused_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict], str, str]:
    """`planexec run` with OPENAI_BASE_URL pointing at a port nobody listens on."""
    tmp_path = tmp_path_factory.mktemp("refused")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code, events, output = run_cli(*demo_run_args(tmp_path), cwd=tmp_path, env=cli_env(url))
    return code, events, output, url


def test_connection_refused_fails_the_run_cleanly(refused_run: tuple) -> None:
    code, events, output, _ = refused_run
    assert code == 1, output
    assert "Traceback" not in output
    result = events[-1]
    assert result["event"] == "result" and result["status"] == "failed"
    assert "planner model 'openai:gpt-4o' failed" in result["reason"]


def test_connection_refused_names_the_url(refused_run: tuple) -> None:
    code, events, output, url = refused_run
    assert code != 0
    assert url in events[-1]["reason"]
    # the sync client says "Connection refused", the async one "Connect call failed": errno 111
    assert "Errno 111" in events[-1]["reason"] or "Connection refused" in events[-1]["reason"]


def read_base_url(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The URL from the server's first line, OPENAI_BASE_URL=..., once it answers."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            line = proc.stdout.readline()
            if not line:
                break
    selector.close()
    assert line.startswith("OPENAI_BASE_URL="), f"server printed {line!r}; exit {proc.poll()}"
    url = line.strip().partition("=")[2]
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


SERVE_COMMAND = (
    "import typer\n"
    "from app.cli.serve_command import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "app()\n"
)


@contextmanager
def server_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = clean_env()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield read_base_url(proc), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_python_m_app_openai_server_serves_a_whole_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server_process("-m", "app.scripted.server", FAST, "--port", "0") as (url, proc):
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        models = httpx.get(f"{url}/models").json()
        assert [m["id"] for m in models["data"]] == ["gpt-4o", "gpt-4o-mini", "scripted"]
        state = run_demo(tmp_path)
        served = httpx.get(url.removesuffix("/v1") + "/_planexec/usage").json()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert_done(state, tmp_path)
    assert recorded_usage(state["usage"]) == served_usage(served)
    assert proc.returncode in (0, 130) and "Traceback" not in stderr, stderr


def test_serve_scenario_command_serves_with_its_fault_flags() -> None:
    with server_process(
        "-c", SERVE_COMMAND, "serve-scenario", FAST, "--port", "0", "--fail-first-429", "1"
    ) as (url, proc):
        body = {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": render("planner", max_steps=12, tools="x")},
                {"role": "user", "content": GOAL},
            ],
            "response_format": {"type": "json_object"},
        }
        first = httpx.post(f"{url}/chat/completions", json=body)
        second = httpx.post(f"{url}/chat/completions", json=body)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert first.status_code == 429
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert second.status_code == 200
    assert json.loads(second.json()["choices"][0]["message"]["content"])["steps"][0]["id"] == "s1"
    assert proc.returncode in (0, 130) and "Traceback" not in stderr, stderr


# a caller's body is bounded in size and time ----------------------------------------------------


def _raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict]:
    """POST `head` (with Connection: close) and `body` on a real socket; the status and JSON
    error that come back before the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + head.encode() + b"\r\n" + body
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_a_body_declared_over_the_cap_is_refused_unread() -> None:
    """Content-Length over MAX_BODY_BYTES: a 413 at once, before a byte of the body is sent."""
    with serving(FAST) as server:
        head = f"Content-Length: {server_module.MAX_BODY_BYTES + 1}\r\n"
        status, body = _raw_request(server.port, head)
        assert status == 413 and "over 8388608 bytes" in body["error"]["message"]
        assert server.usage()["statuses"] == {"413": 1}


def test_a_chunked_body_over_the_cap_is_refused() -> None:
    """No Content-Length to trust: the cap is counted while reading, whatever the chunks. The
    server answers 413 and closes while the caller is still sending (so the caller may see a
    reset instead of the answer): its own count of statuses says what it answered."""
    with serving(FAST) as server:
        chunk = b"x" * 1_000_000
        pieces = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 9 + [b"0\r\n\r\n"]
        try:
            _raw_request(server.port, "Transfer-Encoding: chunked\r\n", b"".join(pieces))
        except (ConnectionResetError, BrokenPipeError):
            pass
        deadline = time.monotonic() + 10
        while server.usage()["statuses"] != {"413": 1} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.usage()["statuses"] == {"413": 1}


def test_a_body_that_never_finishes_arriving_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that sends a few bytes of a promised body and waits holds nothing for long."""
    monkeypatch.setattr(server_module, "BODY_TIMEOUT_S", 0.5)
    with serving(FAST) as server:
        status, body = _raw_request(server.port, "Content-Length: 100\r\n", b'{"model": ')
        assert status == 408 and "took over 0.5 s" in body["error"]["message"]


def test_a_body_nesting_too_deeply_is_a_400_not_a_crash() -> None:
    with serving(FAST) as server:
        deep = b"[" * 100_000 + b"]" * 100_000
        status, body = _raw_request(server.port, f"Content-Length: {len(deep)}\r\n", deep)
        assert status == 400 and "nests too deeply" in body["error"]["message"]


def test_callers_beyond_the_connection_cap_get_503_not_memory() -> None:
    """Each caller may hold a body of up to 8 MB while it arrives: the number of them is capped
    too (40 stalled callers held 300 MB before)."""
    cap = server_module.MAX_CONNECTIONS
    with serving(FAST) as server:
        stalled = []
        try:
            for _ in range(cap):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
                )
                stalled.append(sock)
            time.sleep(0.3)  # every one of them accepted and reading
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            assert data.split(b" ", 2)[1] == b"503", data[:200]
        finally:
            for sock in stalled:
                sock.close()
        # Once they are gone, the server answers again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = sock.recv(65536)
            if data.split(b" ", 2)[1] == b"200":
                break
            time.sleep(0.1)
        assert data.split(b" ", 2)[1] == b"200"
