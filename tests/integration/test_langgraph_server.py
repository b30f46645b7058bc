"""The graph served by a real `langgraph dev` (langgraph.json), driven through the LangGraph SDK.

Runs play the bundled demo with scripted models passed as the run's context, so no API key and no
network are needed. One server serves the whole session (see conftest.py); each test makes its own
threads and the module deletes them, with their step journal, at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from app.context import Context
from app.runs.demo import demo_context
from app.scripted.scenarios import load_scenario
from app.usage import ROLES
from tests.helpers import finished_ids, instant_demo, of_kind, started_ids
from tests.integration.conftest import TEST_METADATA, LangGraphServer

pytestmark = pytest.mark.integration

GRAPH_ID = "planexec"
# Not the demo's own goal: the scripted models pick replies by role, step and turn, not by goal.
GOAL = "Which of our product lines did best over the summer months? Keep it short."
SETTLE_TIMEOUT = 30.0  # seconds for the server to mark a thread idle once its stream ended


@dataclass(frozen=True)
class ServerRun:
    """One run streamed to its end: what came over the stream, then the thread's state."""

    thread_id: str
    events: list[dict[str, Any]]  # the `custom` stream: planexec's progress events, in order
    nodes: list[str]  # the `updates` stream: which node wrote, in order
    errors: list[Any]  # `error` stream parts: the server failed the run
    state: dict[str, Any]  # threads.get_state(...)["values"] after the run


def scripted_context(workspace: Path, **overrides: Any) -> dict[str, Any]:
    """The demo's context as JSON, unaffected by PLANEXEC_* in the developer's shell."""
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("PLANEXEC_")]:
            env.delenv(name)
        return dataclasses.asdict(demo_context(workspace, **overrides))


def stream_run(
    client: SyncLangGraphClient, thread_id: str, goal: str, context: dict[str, Any]
) -> ServerRun:
    events: list[dict[str, Any]] = []
    nodes: list[str] = []
    errors: list[Any] = []
    for part in client.runs.stream(
        thread_id,
        GRAPH_ID,
        input={"goal": goal},
        context=context,
        stream_mode=["custom", "updates"],
    ):
        if part.event == "custom":
            events.append(part.data)
        elif part.event == "updates":
            nodes.extend(part.data)
        elif part.event == "error":
            errors.append(part.data)
    wait_until_settled(client, thread_id)
    state = client.threads.get_state(thread_id)["values"]
    return ServerRun(thread_id, events, nodes, errors, state)


def wait_until_settled(client: SyncLangGraphClient, thread_id: str) -> None:
    """The stream ends with the run; the thread's bookkeeping may trail it by a moment."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while (status := client.threads.get(thread_id)["status"]) == "busy":
        assert time.monotonic() < deadline, f"thread {thread_id} still {status!r} after its run"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(langgraph_server: LangGraphServer) -> Iterator[SyncLangGraphClient]:
    # api_key=None: do not send a LangSmith key from the environment to the local server.
    sdk = get_sync_client(url=langgraph_server.url, api_key=None, timeout=120.0)
    yield sdk
    sdk.close()


@pytest.fixture(scope="module")
def new_thread(client: SyncLangGraphClient) -> Iterator[Callable[[], str]]:
    """Makes threads; deletes them and their step journal when the module is done, so the
    server's `.langgraph_api/` state does not grow with every session."""
    made: list[str] = []

    def make() -> str:
        thread_id = client.threads.create(metadata=TEST_METADATA)["thread_id"]
        made.append(thread_id)
        return thread_id

    yield make
    for thread_id in made:
        journal = ["planexec", "steps", thread_id]  # graphs/journal.py's namespace
        for item in client.store.search_items(journal, limit=1000)["items"]:
            client.store.delete_item(item["namespace"], key=item["key"])
        client.threads.delete(thread_id)


@pytest.fixture(scope="module")
def demo_run(
    client: SyncLangGraphClient,
    new_thread: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ServerRun, Path]:
    """The bundled demo, run once over the server for the tests that read it."""
    workspace = tmp_path_factory.mktemp("demo") / "ws"
    run = stream_run(client, new_thread(), GOAL, scripted_context(workspace))
    return run, workspace


def assert_step_order(events: list[dict[str, Any]]) -> None:
    """Every started step finishes, and no step finishes before it started."""
    started: dict[str, int] = {}
    for i, event in enumerate(events):
        if event["event"] == "step_started":
            started.setdefault(event["step_id"], i)
        elif event["event"] == "step_finished":
            step = event["step_id"]
            assert step in started, f"step_finished for {step} before its step_started: {events}"
            assert started[step] < i
    assert set(started) == set(finished_ids(events)), "a started step never finished"


def test_demo_runs_to_done_over_the_server(demo_run: tuple[ServerRun, Path]) -> None:
    run, workspace = demo_run
    events, kinds = run.events, [e["event"] for e in run.events]

    assert run.errors == []
    # The plan streams (Context.stream_plan): s1 starts before the whole plan has arrived.
    assert kinds[0] == "step_started" and events[0]["step_id"] == "s1"
    assert kinds.count("plan") == 1
    assert kinds[-1] == "finished" and kinds.count("finished") == 1
    assert events[-1]["status"] == "done"
    assert_step_order(events)
    # The demo's surprise: s2's query finds nothing, the replanner revises the rest of the plan.
    assert kinds.count("replanned") == 1
    replanned = kinds.index("replanned")
    s2_finished = next(
        i for i, e in enumerate(events) if e["event"] == "step_finished" and e["step_id"] == "s2"
    )
    assert events[s2_finished]["surprise"]
    assert s2_finished < replanned
    new_steps = {"s5", "s6", "s7", "s8", "s9"}
    assert new_steps <= {s["id"] for s in events[replanned]["steps"]}
    revised_started = [
        i
        for i, e in enumerate(events)
        if e["event"] == "step_started" and e["step_id"] in new_steps
    ]
    assert len(revised_started) == len(new_steps) and min(revised_started) > replanned
    assert "s3" not in started_ids(events) and "s4" not in started_ids(events)
    assert not any(e.get("recovered") for e in of_kind(events, "step_finished"))
    # The first batch of steps ran inside the planner node, while its plan streamed.
    assert run.nodes == ["planner", "replanner", "executor", "replanner"]

    state = run.state
    assert state["status"] == "done", state.get("reason")
    assert "Gear" in state["response"] and "31.6" in state["response"]
    for step in ("s1", "s5", "s6", "s7", "s8", "s9"):
        assert state["results"][step]["status"] == "done", state["results"][step]
    assert state["replans"] == 1
    for role in ROLES:
        assert state["usage"][role]["calls"] > 0, state["usage"]
        assert state["usage"][role]["cost_usd"] is not None, state["usage"]
    assert (workspace / "report.md").is_file()
    assert "Gear" in (workspace / "report.md").read_text(encoding="utf-8")


def test_scenario_plays_whatever_goal_the_run_was_given(demo_run: tuple[ServerRun, Path]) -> None:
    run, _ = demo_run
    assert GOAL != load_scenario("demo").goal
    assert run.state["goal"] == GOAL
    assert run.state["status"] == "done"


def test_unknown_tool_in_context_fails_the_run_cleanly(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    run = stream_run(client, new_thread(), GOAL, scripted_context(tmp_path / "ws", tools=["nope"]))

    assert run.errors == [], "the server reported an error instead of a failed run"
    assert run.state["status"] == "failed"
    assert "nope" in run.state["reason"], run.state["reason"]
    finished = of_kind(run.events, "finished")
    assert len(finished) == 1 and finished[0]["status"] == "failed"
    assert finished[0]["reason"] == run.state["reason"]
    assert started_ids(run.events) == []
    assert [r["status"] for r in client.runs.list(run.thread_id)] == ["success"]
    assert client.threads.get(run.thread_id)["status"] == "idle"


def graph_schemas(client: SyncLangGraphClient) -> dict[str, Any]:
    """The schemas the server derives from the graph (Studio renders its forms from them)."""
    (assistant,) = client.assistants.search(graph_id=GRAPH_ID, limit=1)
    return dict(client.assistants.get_schemas(assistant["assistant_id"]))


def test_server_offers_studio_a_context_form(client: SyncLangGraphClient) -> None:
    properties = graph_schemas(client)["context_schema"]["properties"]
    assert set(properties) == {f.name for f in dataclasses.fields(Context)}
    assert all(p.get("description") for p in properties.values()), properties


def test_server_offers_studio_an_input_form(client: SyncLangGraphClient) -> None:
    schema = graph_schemas(client)["input_schema"]
    assert schema is not None and "goal" in schema["properties"]


# A second, instant script for a follow-up goal. Its step ids repeat the demo's s1 and s2, so a
# run that kept the first run's results or journal would take them as done instead of running them.
FOLLOW_UP = {
    "name": "follow-up",
    "goal": "A follow-up question.",
    "planner": {
        "steps": [
            {"id": "s1", "description": "Look again.", "depends_on": []},
            {"id": "s2", "description": "Answer again.", "depends_on": ["s1"]},
        ]
    },
    "executor": {"s1": [{"content": "follow-up s1"}], "s2": [{"content": "follow-up s2"}]},
    "replanner": [{"action": "finish", "reason": "answered", "response": "follow-up answer"}],
}


def test_new_goal_on_a_used_thread_runs_afresh(
    client: SyncLangGraphClient, demo_run: tuple[ServerRun, Path], tmp_path: Path
) -> None:
    """Studio sends a second goal to the same thread: nothing of the first run may carry over."""
    first, _ = demo_run
    script = tmp_path / "follow_up.json"
    script.write_text(json.dumps(FOLLOW_UP), encoding="utf-8")
    model = f"scripted:{script}"
    context = scripted_context(
        tmp_path / "ws", planner_model=model, executor_model=model, replanner_model=model, tools=[]
    )

    second = stream_run(client, first.thread_id, "An unrelated follow-up goal.", context)

    assert second.errors == []
    state = second.state
    assert state["status"] == "done", state.get("reason")
    assert state["goal"] == "An unrelated follow-up goal."
    assert state["response"] == "follow-up answer"
    assert started_ids(second.events) == ["s1", "s2"], "steps were taken from the earlier run"
    assert finished_ids(second.events, recovered=True) == []
    assert {k: v["result"] for k, v in state["results"].items()} == {
        "s1": "follow-up s1",
        "s2": "follow-up s2",
    }
    # The accumulators restart: this run's decisions and model calls only.
    assert [h["action"] for h in state["history"]] == ["finish"]
    assert {role: u["calls"] for role, u in state["usage"].items()} == {
        "planner": 1,
        "executor": 2,
        "replanner": 1,
    }


def pending_interrupts(client: SyncLangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    state = client.threads.get_state(thread_id)
    return [i["value"] for task in state.get("tasks", []) for i in task.get("interrupts", [])]


def start_paused(client: SyncLangGraphClient, thread_id: str, tmp_path: Path) -> dict[str, Any]:
    """Start the instant demo with approve_plan on; return its context once the run paused."""
    ctx = scripted_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)), approve_plan=True)
    client.runs.wait(thread_id, GRAPH_ID, input={"goal": GOAL}, context=ctx)
    wait_until_settled(client, thread_id)
    return ctx


def answer(
    client: SyncLangGraphClient,
    thread_id: str,
    ctx: dict[str, Any] | None,
    resume: dict[str, Any],
) -> None:
    """Resume a paused thread with `Command(resume=...)` and wait for the run to settle."""
    client.runs.wait(thread_id, GRAPH_ID, command={"resume": resume}, context=ctx)
    wait_until_settled(client, thread_id)


def test_plan_approval_pauses_refuses_a_cyclic_edit_and_completes_on_approve(
    client: SyncLangGraphClient,
    new_thread: Callable[[], str],
    tmp_path: Path,
) -> None:
    thread_id = new_thread()
    ctx = start_paused(client, thread_id, tmp_path)

    [request] = pending_interrupts(client, thread_id)
    assert request["kind"] == "plan_approval"
    assert [s["id"] for s in request["steps"]] == ["s1", "s2", "s3", "s4"]
    assert client.threads.get_state(thread_id)["next"] == ["approval"]

    cycle = [
        {"id": "a", "description": "first", "depends_on": ["b"]},
        {"id": "b", "description": "second", "depends_on": ["a"]},
    ]
    answer(client, thread_id, ctx, {"action": "edit", "steps": cycle})
    [refused] = pending_interrupts(client, thread_id)
    assert "cycle" in refused["error"] and "a -> b -> a" in refused["error"]
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["approval"], "an invalid edit must leave the thread paused"
    assert [s["id"] for s in state["values"]["plan"]] == ["s1", "s2", "s3", "s4"]

    # Approve the plan; the demo's surprise leads to a revision, which asks again.
    approval = {"action": "approve", "revision": request["revision"]}
    answer(client, thread_id, ctx, approval)
    [revision] = pending_interrupts(client, thread_id)
    assert revision["completed"] == ["s1", "s2"]
    assert [s["id"] for s in revision["steps"]] == ["s5", "s6", "s7", "s8", "s9"]

    # The same answer again (a retried request): it names the first plan, so it answers nothing.
    answer(client, thread_id, ctx, approval)
    [still] = pending_interrupts(client, thread_id)
    assert still["revision"] == revision["revision"] != request["revision"]
    assert f"plan revision '{request['revision']}'" in still["error"]
    assert client.threads.get_state(thread_id)["next"] == ["approval"]

    answer(client, thread_id, ctx, {"action": "approve", "revision": revision["revision"]})
    final = client.threads.get_state(thread_id)
    assert final["next"] == [] and pending_interrupts(client, thread_id) == []
    assert final["values"]["status"] == "done"
    assert [h["action"] for h in final["values"]["history"]] == [
        "approved",
        "replan",
        "approved",
        "finish",
    ]


def test_plan_rejected_over_the_server_ends_the_run(
    client: SyncLangGraphClient,
    new_thread: Callable[[], str],
    tmp_path: Path,
) -> None:
    thread_id = new_thread()
    ctx = start_paused(client, thread_id, tmp_path)

    answer(client, thread_id, ctx, {"action": "reject", "reason": "too costly"})

    values = client.threads.get_state(thread_id)["values"]
    assert values["status"] == "rejected"
    assert values["reason"] == "plan rejected: too costly"
    assert not values.get("results"), "a rejected plan runs no step"


def test_templated_goal_reuses_its_cached_plan_from_the_server_store(
    client: SyncLangGraphClient, new_thread: Callable[[], str], tmp_path: Path
) -> None:
    """The plan cache lives in the server's own store: the second run of a template makes no
    planner call, and the entry is there for SDK clients to read."""
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "plan_cache.json"
    template = f"region-note-{new_thread()}"  # this session's own: the server's store persists
    cache_namespace = ["planexec", "plan_cache", template]  # graphs/plan_cache.py's

    def region_run(region: str) -> ServerRun:
        with pytest.MonkeyPatch.context() as env:
            for name in [n for n in os.environ if n.startswith("PLANEXEC_")]:
                env.delenv(name)
            ctx = Context.every_role(
                f"scripted:{scenario}", tools=["write_file"], workspace=str(tmp_path / "ws"),
                template=template, params={"region": region},
            )  # fmt: skip
        goal = f"Write the sales note for region {region}."
        return stream_run(client, new_thread(), goal, dataclasses.asdict(ctx))

    try:
        first = region_run("Berlin")
        assert first.errors == [] and first.state["status"] == "done", first.state.get("reason")
        assert [e["action"] for e in of_kind(first.events, "plan_cache")] == ["miss", "stored"]
        assert first.state["usage"]["planner"]["calls"] == 1
        [item] = client.store.search_items(cache_namespace)["items"]
        assert item["value"]["steps"][0]["args"]["path"] == "notes/{region}.txt"

        second = region_run("Paris")
        assert second.errors == [] and second.state["status"] == "done"
        assert [e["action"] for e in of_kind(second.events, "plan_cache")] == ["hit"]
        assert "planner" not in second.state["usage"]  # no planner model call
        assert second.state["plan_cache"]["from_cache"] is True
        assert (tmp_path / "ws" / "notes" / "Paris.txt").read_text() == "Sales note: Paris"
    finally:
        for item in client.store.search_items(cache_namespace)["items"]:
            client.store.delete_item(item["namespace"], key=item["key"])
