# ruff: noqa: F811  (the server fixtures are imported, then named as parameters)
"""A run's context, checked and kept, over the CLI and a real `langgraph dev`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from langgraph_sdk.client import SyncLangGraphClient

from tests.helpers import clean_env, run_cli
from tests.integration.conftest import SERVER_CEILINGS
from tests.integration.test_langgraph_server import (  # noqa: F401 (fixtures)
    GOAL,
    GRAPH_ID,
    answer,
    client,
    new_thread,
    pending_interrupts,
    scripted_context,
    start_paused,
    stream_run,
    wait_until_settled,
)

pytestmark = pytest.mark.integration


def test_the_cli_reports_a_bad_environment_value_and_exits_4(tmp_path: Path) -> None:
    env = {**clean_env(), "PLANEXEC_MAX_CONCURRENCY": "two"}
    proc = run_cli(
        "run", "a goal", "--scenario", "demo", "--db", "memory://", cwd=tmp_path, env=env
    )
    assert proc.returncode == 4, proc.stderr
    said = " ".join(proc.stderr.split())  # rich wraps long lines
    assert "PLANEXEC_MAX_CONCURRENCY must be an integer, got 'two'" in said
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"max_concurrency": "two"}, "Context field 'max_concurrency' must be an integer"),
        ({"tools": "list_files"}, "(a list such as ['list_files'], not a string)"),
    ],
)
def test_the_server_refuses_a_context_of_the_wrong_type_with_the_field(
    client: SyncLangGraphClient,
    new_thread: Callable[[], str],
    tmp_path: Path,
    bad: dict,
    message: str,
) -> None:
    thread_id = new_thread()
    run = stream_run(client, thread_id, GOAL, {**scripted_context(tmp_path / "ws"), **bad})

    assert len(run.errors) == 1, run
    assert message in json.dumps(run.errors[0]), run.errors
    assert client.threads.get_state(thread_id)["values"] == {}, "nothing ran"


def test_an_approval_answered_without_a_context_uses_the_runs_own(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    thread_id = new_thread()
    start_paused(client, thread_id, tmp_path)
    assert pending_interrupts(client, thread_id)

    # No context: the defaults would be OpenAI models, and the server has no key.
    for _ in ("the plan", "its revision"):
        answer(client, thread_id, None, {"action": "approve"})

    values = client.threads.get_state(thread_id)["values"]
    assert values["status"] == "done", values.get("reason")
    assert values["context"]["planner_model"].startswith("scripted:")
    # The server's checkpoint ids carry their time: the waits were measured (graphs/run_clock.py).
    assert values["paused_seconds"] > 0


def one_tool_call(tmp_path: Path, tool: str, args: dict, tools: list[str]) -> dict:
    """A context whose scripted run has one step: call `tool` with `args`, report its output."""
    script = {
        "name": "one-tool-call",
        "goal": "Call one tool.",
        "planner": {"steps": [{"id": "s1", "description": f"Call {tool}.", "depends_on": []}]},
        "executor": {
            "s1": [
                {"tool_calls": [{"name": tool, "args": args}]},
                {"content": "{last_tool_result}"},
            ]
        },
        "replanner": [{"action": "finish", "reason": "done", "response": "reported"}],
    }
    path = tmp_path / "one_tool_call.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    model = f"scripted:{path}"
    return scripted_context(
        tmp_path / "ws",
        planner_model=model,
        executor_model=model,
        replanner_model=model,
        tools=tools,
    )


def test_a_tool_named_by_import_path_runs_over_the_server(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    ctx = one_tool_call(tmp_path, "shout", {"text": "hi"}, tools=["tests.custom_tools:shout"])

    run = stream_run(client, new_thread(), GOAL, ctx)

    assert run.errors == [] and run.state["status"] == "done", run.state.get("reason")
    assert run.state["results"]["s1"]["result"] == "HI"


def test_an_unimportable_tool_is_refused_before_the_planner_over_the_server(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    ctx = scripted_context(tmp_path / "ws", tools=["calculator", "tests.custom_tools:missing"])
    run = stream_run(client, new_thread(), GOAL, ctx)

    assert run.errors == []
    assert run.state["status"] == "failed"
    assert "module 'tests.custom_tools' has no 'missing'" in run.state["reason"]
    assert "planner" not in run.state.get("usage", {}), "the planner was paid for"


def test_an_mcp_tool_of_the_deployment_runs_over_the_server(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    """The server's environment defines the `math` MCP server (conftest.py); a run picks it."""
    ctx = one_tool_call(tmp_path, "math_add", {"a": 2, "b": 40}, tools=["mcp:math/add"])

    run = stream_run(client, new_thread(), GOAL, ctx)

    assert run.errors == [] and run.state["status"] == "done", run.state.get("reason")
    assert run.state["results"]["s1"]["result"] == "42"
    assert [c["name"] for c in run.state["results"]["s1"]["tool_calls"]] == ["math_add"]


def test_the_server_refuses_a_context_above_its_ceilings_before_the_planner(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    assert "max_concurrency=64" in SERVER_CEILINGS
    ctx = scripted_context(tmp_path / "ws", max_concurrency=100_000)
    run = stream_run(client, new_thread(), GOAL, ctx)

    assert run.errors == []
    assert run.state["status"] == "failed"
    assert "max_concurrency 100000 is above 64" in run.state["reason"]
    assert "planner" not in run.state.get("usage", {}), "the planner was paid for"


def test_a_paused_runs_context_edited_past_a_ceiling_is_refused_over_the_server(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    """The server's update_state can rewrite a paused run's recorded context; the approval
    node checks it again before any step runs."""
    assert "model_timeout_s=600" in SERVER_CEILINGS
    thread_id = new_thread()
    start_paused(client, thread_id, tmp_path)
    recorded = client.threads.get_state(thread_id)["values"]["context"]
    client.threads.update_state(thread_id, {"context": {**recorded, "model_timeout_s": 86400}})

    answer(client, thread_id, None, {"action": "approve"})

    values = client.threads.get_state(thread_id)["values"]
    assert values["status"] == "failed"
    assert "model_timeout_s 86400 is above 600" in values["reason"]
    assert not values.get("results"), "a step ran"


def test_an_explicit_option_equal_to_the_default_wins_over_the_environment(
    tmp_path: Path,
) -> None:
    """`--max-concurrency 16` (the default) in a shell with PLANEXEC_MAX_CONCURRENCY=3: the
    option wins. The CLI's copy that made the paths absolute filled fields at their default
    from the environment again."""
    env = {**clean_env(), "PLANEXEC_MAX_CONCURRENCY": "3", "PLANEXEC_MAX_REPLANS": "1"}
    db = str(tmp_path / "r.sqlite")
    args = ("demo", "--thread", "e1", "--db", db, "--workspace", str(tmp_path / "ws"))
    proc = run_cli(*args, "--max-concurrency", "16", "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(run_cli("show", "e1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert shown["context"]["max_concurrency"] == 16
    assert shown["context"]["max_replans"] == 1, "a field not given still comes from the shell"
