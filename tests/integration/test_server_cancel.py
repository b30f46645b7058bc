"""`runs.cancel` over the LangGraph SDK against a real `langgraph dev`: no new step starts, the
steps in flight are cancelled within a second (their next tool call never happens), and the run
can be continued afterwards to the end."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from app.context import Context
from tests.integration.conftest import TEST_METADATA, LangGraphServer

pytestmark = pytest.mark.integration

GRAPH_ID = "planexec"
SLOW_TURN = 4.0  # seconds the middle model turn of each slow step takes


def slow_scenario(path: Path, slow_turn: float, plan_token_latency: float) -> Path:
    """Three steps that each write `<id>-started`, wait on a slow model turn, then write
    `<id>-after`; a fourth step that needs all three. With `plan_token_latency` the plan takes
    seconds to stream, so a cancel lands while the planner is still streaming."""

    def slow(step_id: str) -> list[dict[str, Any]]:
        return [
            {"tool_calls": [write(f"{step_id}-started")], "latency": 0.0},
            {"tool_calls": [write(f"{step_id}-after")], "latency": slow_turn},
            {"content": f"{step_id} done", "latency": 0.0},
        ]

    def write(name: str) -> dict[str, Any]:
        return {"name": "write_file", "args": {"path": name, "content": "x"}}

    steps = [{"id": f"s{i}", "description": f"Slow job {i}.", "depends_on": []} for i in (1, 2, 3)]
    steps.append({"id": "join", "description": "Join.", "depends_on": ["s1", "s2", "s3"]})
    script = {
        "name": "slow_cancel",
        "goal": "Slow work.",
        "tools": ["write_file"],
        "token_latency": {"planner": plan_token_latency},
        "planner": {"steps": steps},
        "executor": {
            **{f"s{i}": slow(f"s{i}") for i in (1, 2, 3)},
            "join": [{"tool_calls": [write("join-started")]}, {"content": "joined"}],
        },
        "replanner": [{"action": "finish", "reason": "done", "response": "All done."}],
    }
    path.write_text(json.dumps(script), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def client(langgraph_server: LangGraphServer) -> Iterator[SyncLangGraphClient]:
    sdk = get_sync_client(url=langgraph_server.url, api_key=None, timeout=60.0)
    yield sdk
    sdk.close()


def wait_for(predicate: Any, timeout: float, what: str, explain: Any) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {explain()}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("stream_plan", "plan_token_latency"),
    [(True, 0.0), (True, 0.05), (False, 0.0)],
    ids=["streamed-plan", "cancel-mid-stream", "whole-plan"],
)
def test_cancel_stops_new_steps_and_cancels_steps_in_flight(
    client: SyncLangGraphClient, tmp_path: Path, stream_plan: bool, plan_token_latency: float
) -> None:
    scenario = slow_scenario(tmp_path / "slow.json", SLOW_TURN, plan_token_latency)
    ws = tmp_path / "ws"
    ctx = Context.every_role(
        f"scripted:{scenario}", tools=["write_file"], workspace=str(ws), stream_plan=stream_plan
    )
    context = dataclasses.asdict(ctx)
    thread_id = client.threads.create(metadata=TEST_METADATA)["thread_id"]
    try:
        run = client.runs.create(thread_id, GRAPH_ID, input={"goal": "Slow work."}, context=context)
        started = [ws / f"s{i}-started" for i in (1, 2, 3)]
        wait_for(
            lambda: all(p.exists() for p in started),
            30,
            "the three slow steps to start",
            lambda: client.threads.get_state(thread_id)["values"],
        )

        asked = time.monotonic()
        client.runs.cancel(thread_id, run["run_id"], wait=True)
        took = time.monotonic() - asked

        assert took < 1.5, f"cancel took {took:.2f}s"
        assert client.runs.get(thread_id, run["run_id"])["status"] == "interrupted"
        time.sleep(SLOW_TURN + 1.0)  # when the slow turns would have ended
        assert not list(ws.glob("*-after")), "a step in flight went on after the cancel"
        assert not (ws / "join-started").exists(), "a new step started after the cancel"

        # Left resumable: continuing the thread runs the plan to the end.
        client.runs.wait(thread_id, GRAPH_ID, input=None, context=context)
        state = client.threads.get_state(thread_id)["values"]
        assert state["status"] == "done", state.get("reason")
        assert (ws / "join-started").exists()
        assert sorted(p.name for p in ws.glob("*-after")) == ["s1-after", "s2-after", "s3-after"]
    finally:
        client.threads.delete(thread_id)
