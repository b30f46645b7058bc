"""Claude and Gemini in planexec roles, offline.

A missing integration or key is refused before a run, naming what to do. The request each
integration builds for planexec's planner (structured output) and executor (tools bound) is
captured where it would be handed to the provider's SDK, inside a real graph run, and checked
against the shape that provider expects; nothing is sent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.models import PROVIDERS, FatalModelError, ModelConfigError, check_model, load_chat_model
from app.runs.demo import demo_context
from graphs.plan_execute import build_graph
from tests.helpers import instant_demo, run_cli

CLAUDE = "anthropic:claude-sonnet-4-5"
GEMINI = "google_genai:gemini-2.5-flash"
KEYS = ("ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI")
DEMO_TOOLS = {"sql_query", "calculator", "write_file"}


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)


# refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "variables"),
    [(CLAUDE, "ANTHROPIC_API_KEY"), (GEMINI, "GOOGLE_API_KEY or GEMINI_API_KEY")],
)
def test_a_missing_key_is_refused_naming_the_variable(spec: str, variables: str) -> None:
    with pytest.raises(ModelConfigError, match=f"needs an API key: set {variables}"):
        check_model(spec)


@pytest.mark.parametrize(
    ("spec", "module", "command"),
    [
        (CLAUDE, "langchain_anthropic", 'pip install "planexec[anthropic]"'),
        (GEMINI, "langchain_google_genai", 'pip install "planexec[google]"'),
    ],
)
def test_a_missing_integration_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, spec: str, module: str, command: str
) -> None:
    for key in KEYS[:3]:
        monkeypatch.setenv(key, "sk-test")  # the key is there: only the package is missing
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(ModelConfigError) as caught:
        check_model(spec)
    assert command in str(caught.value) and module in str(caught.value)


@pytest.mark.parametrize(
    ("env", "spec", "model_class"),
    [
        ({"ANTHROPIC_API_KEY": "sk-test"}, CLAUDE, "ChatAnthropic"),
        ({"GOOGLE_API_KEY": "g-test"}, GEMINI, "ChatGoogleGenerativeAI"),
        ({"GEMINI_API_KEY": "g-test"}, GEMINI, "ChatGoogleGenerativeAI"),  # the fallback variable
    ],
)
def test_with_the_key_set_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], spec: str, model_class: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    check_model(spec)
    assert type(load_chat_model(spec)).__name__ == model_class


def test_every_provider_names_an_installable_extra() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    for provider in PROVIDERS.values():
        extra = provider.install.split("[")[1].split("]")[0]
        assert f"\n{extra} = [" in pyproject, extra


def test_cli_refuses_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    proc = run_cli(
        "run", "goal", "--scenario", "demo", "--planner-model", CLAUDE,
        "--executor-model", GEMINI, "--db", str(db), "--workspace", str(tmp_path / "ws"),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert "ANTHROPIC_API_KEY" in proc.stderr or "GOOGLE_API_KEY" in proc.stderr
    listed = run_cli("runs", "--db", str(db), "--json", cwd=tmp_path)
    assert "goal" not in listed.stdout  # no run was recorded


def test_cli_names_the_extra_when_the_integration_cannot_be_imported(tmp_path: Path) -> None:
    # A broken install: langchain_anthropic is there but cannot be imported.
    shadow = tmp_path / "shadow" / "langchain_anthropic"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'anthropic'\")\n")
    from tests.helpers import clean_env

    env = {**clean_env(), "PYTHONPATH": str(tmp_path / "shadow"), "ANTHROPIC_API_KEY": "sk-x"}
    proc = run_cli(
        "run", "goal", "--scenario", "demo", "--planner-model", CLAUDE,
        "--db", str(tmp_path / "runs.sqlite"), "--workspace", str(tmp_path / "ws"),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stderr
    assert 'pip install "planexec[anthropic]"' in " ".join(proc.stderr.split())


# request shapes -------------------------------------------------------------------------------


class Captured(FatalModelError):
    """Raised where the request would be sent: the run ends there, nothing leaves the machine."""


@pytest.fixture
def anthropic_requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from langchain_anthropic import ChatAnthropic

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    sent: list[dict[str, Any]] = []

    def create(self: Any, payload: dict) -> Any:
        sent.append(payload)
        raise Captured("request captured")

    async def acreate(self: Any, payload: dict) -> Any:  # the async nodes (streamed planner)
        return create(self, payload)

    monkeypatch.setattr(ChatAnthropic, "_create", create)
    monkeypatch.setattr(ChatAnthropic, "_acreate", acreate)
    return sent


@pytest.fixture
def gemini_requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    from google.genai.models import AsyncModels, Models

    monkeypatch.setenv("GEMINI_API_KEY", "g-test")
    sent: list[dict[str, Any]] = []

    def generate(self: Any, **request: Any) -> Any:
        sent.append(request)
        raise Captured("request captured")

    async def agenerate(self: Any, **request: Any) -> Any:  # the async nodes (streamed planner)
        return generate(self, **request)

    monkeypatch.setattr(Models, "generate_content", generate)
    monkeypatch.setattr(Models, "generate_content_stream", generate)
    monkeypatch.setattr(AsyncModels, "generate_content", agenerate)
    monkeypatch.setattr(AsyncModels, "generate_content_stream", agenerate)
    return sent


def run_demo(tmp_path: Path, **models: str) -> dict[str, Any]:
    """The demo goal with the scripted demo in every role but `models`, to the end."""
    ctx = demo_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)), **models)
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "providers"}}
    return graph.invoke({"goal": "Q3 revenue report"}, config=config, context=ctx)


def test_claude_planner_request_forces_the_plan_tool(
    tmp_path: Path, anthropic_requests: list[dict[str, Any]]
) -> None:
    state = run_demo(tmp_path, planner_model=CLAUDE, plan_format="json")

    assert state["status"] == "failed"
    [payload] = anthropic_requests  # the failed call is not retried
    assert payload["model"] == "claude-sonnet-4-5"
    [tool] = payload["tools"]
    assert tool["name"] == "Plan" and "steps" in tool["input_schema"]["properties"]
    assert payload["tool_choice"] == {"type": "tool", "name": "Plan"}
    # Anthropic takes the system prompt apart from the turns, which alternate from the user.
    assert "planner" in str(payload["system"])
    assert [m["role"] for m in payload["messages"]] == ["user"]
    assert "Q3 revenue report" in str(payload["messages"][0]["content"])


def test_claude_planner_request_asks_for_plan_lines_as_text(
    tmp_path: Path, anthropic_requests: list[dict[str, Any]]
) -> None:
    run_demo(tmp_path, planner_model=CLAUDE)  # plan_format "lines", the default

    [payload] = anthropic_requests
    assert "tools" not in payload and "tool_choice" not in payload
    assert "one step per line" in str(payload["system"])
    assert "ID = TOOL(ARGS)" in str(payload["system"])


def test_claude_executor_request_offers_the_tools(
    tmp_path: Path, anthropic_requests: list[dict[str, Any]]
) -> None:
    run_demo(tmp_path, executor_model=CLAUDE)

    assert anthropic_requests
    for payload in anthropic_requests:
        names = {t["name"] for t in payload["tools"]}
        # Each step is offered its plan step's tools (a subset of the run's) and flag_surprise.
        assert "flag_surprise" in names and names <= DEMO_TOOLS | {"flag_surprise"}
        assert all(t["input_schema"]["type"] == "object" for t in payload["tools"])
        assert payload.get("tool_choice") in (None, {"type": "auto"})  # the model may answer
        assert "executor" in str(payload["system"])
        assert payload["messages"][0]["role"] == "user"


def test_gemini_planner_request_asks_for_the_plan_schema(
    tmp_path: Path, gemini_requests: list[dict[str, Any]]
) -> None:
    state = run_demo(tmp_path, planner_model=GEMINI, plan_format="json")

    assert state["status"] == "failed"
    [request] = gemini_requests
    assert request["model"] == "gemini-2.5-flash"
    config = request["config"]
    assert config.response_mime_type == "application/json"
    schema = config.response_json_schema or config.response_schema
    assert "steps" in str(schema)
    assert "planner" in str(config.system_instruction)
    assert [c.role for c in request["contents"]] == ["user"]
    assert "Q3 revenue report" in str(request["contents"][0])


def test_gemini_executor_request_declares_the_tools(
    tmp_path: Path, gemini_requests: list[dict[str, Any]]
) -> None:
    run_demo(tmp_path, executor_model=GEMINI)

    assert gemini_requests
    for request in gemini_requests:
        config = request["config"]
        declared = {f.name for tool in config.tools for f in tool.function_declarations or []}
        assert "flag_surprise" in declared and declared <= DEMO_TOOLS | {"flag_surprise"}
        assert "executor" in str(config.system_instruction)
        assert [c.role for c in request["contents"]] == ["user"]


# usage ----------------------------------------------------------------------------------------


def test_claude_cache_reads_are_recorded_as_cached_input_tokens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Every executor call is answered by langchain-anthropic's own parsing of an Anthropic
    # response that read 1,152 tokens from the prompt cache and wrote 64 to it.
    from anthropic.types import Message, TextBlock, Usage
    from langchain_anthropic import ChatAnthropic

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    answer = Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-sonnet-4-5",
        content=[TextBlock(type="text", text="done")],
        stop_reason="end_turn",
        usage=Usage(
            input_tokens=200,
            output_tokens=3,
            cache_read_input_tokens=1152,
            cache_creation_input_tokens=64,
        ),
    )

    class Raw:
        def parse(self) -> Message:
            return answer

    async def acreate(self: Any, payload: dict) -> Raw:  # the async executor's path
        return Raw()

    monkeypatch.setattr(ChatAnthropic, "_create", lambda self, payload: Raw())
    monkeypatch.setattr(ChatAnthropic, "_acreate", acreate)

    state = run_demo(tmp_path, executor_model=CLAUDE)

    executor = state["usage"]["executor"]
    calls = executor["calls"]
    assert calls >= 5  # one per step of the demo plan
    assert executor["input_tokens"] == calls * (200 + 1152 + 64)
    assert executor["cached_input_tokens"] == calls * 1152
    assert executor["output_tokens"] == calls * 3
