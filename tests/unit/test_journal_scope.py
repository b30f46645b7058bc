"""What a journaled step result may be reused for (graphs/journal.py), and forks from Python."""

from __future__ import annotations

from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.runs.demo import demo_context
from graphs.journal import StepJournal, journal_scope
from graphs.plan_execute import build_graph
from tests.helpers import finished_ids, instant_demo, started_ids

STEP = {"id": "s2", "description": "Sum the revenue.", "depends_on": ["s1"], "attempt": 1}
DEPS = {"s1": {"id": "s1", "status": "done", "result": "3 rows"}}
RESULT = {"id": "s2", "status": "done", "result": "42", "attempts": 1}


def journal(scope: str, store: InMemoryStore) -> StepJournal:
    return StepJournal(store, "thread-1", "run-1", scope)


def test_a_result_is_reused_only_for_the_same_step_inputs_and_task() -> None:
    store = InMemoryStore()
    journal("task-a", store).put(STEP, DEPS, RESULT, {})

    assert journal("task-a", store).get(STEP, DEPS) == {"result": RESULT, "usage": {}}
    edited = {**STEP, "description": "Sum the revenue in euros."}
    assert journal("task-a", store).get(edited, DEPS) is None
    other_input = {"s1": {**DEPS["s1"], "result": "4 rows"}}
    assert journal("task-a", store).get(STEP, other_input) is None
    assert journal("task-b", store).get(STEP, DEPS) is None  # a fork: another task
    assert journal("task-a", store).all() == {"s2": RESULT}
    assert journal("task-b", store).all() == {}


def test_the_scope_is_the_task_id_in_the_checkpoint_namespace() -> None:
    assert journal_scope({"configurable": {"checkpoint_ns": "executor:1f2e"}}) == "1f2e"
    assert journal_scope({"configurable": {"checkpoint_ns": "outer:9|executor:1f2e"}}) == "1f2e"
    assert journal_scope({"configurable": {}}) == "-"


def test_a_fork_from_python_runs_its_steps_afresh(tmp_path: Path) -> None:
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "fork-1"}}
    # Whole plan first (not streamed), so a checkpoint sits between the planner and the steps.
    ctx = demo_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)), stream_plan=False)
    assert graph.invoke({"goal": "g"}, config=config, context=ctx)["status"] == "done"
    [after_planner] = [
        s
        for s in graph.get_state_history(config)
        if s.next == ("executor",) and s.metadata["step"] == 1
    ]

    events = [
        e for e in graph.stream(None, config=after_planner.config, stream_mode="custom")
    ]  # no context: the run's recorded one is used

    assert started_ids(events)[:2] == ["s1", "s2"]
    assert finished_ids(events, recovered=True) == []
    assert graph.get_state(config).values["status"] == "done"


def test_idempotency_keys_are_stable_on_resume_and_new_in_a_fork(tmp_path: Path) -> None:
    import asyncio

    from langchain_core.tools import tool

    from graphs.budget import Spend
    from graphs.scheduler import step_work
    from tools.step_context import idempotency_key

    keys: list[str | None] = []

    @tool
    def charge(amount: int) -> str:
        """Charge the card."""
        keys.append(idempotency_key())
        return "charged"

    ctx = demo_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)))
    state = {"goal": "g", "run_id": "run-1"}
    step = {
        "id": "s1", "description": "", "tool": "charge", "args": {"amount": 5},
        "depends_on": [], "attempt": 1,
    }  # fmt: skip

    def call_in(scope: str) -> None:
        store = InMemoryStore()  # a fresh journal each time: the call is really made
        work = step_work(ctx, state, [charge], journal(scope, store), Spend(ctx, state))
        assert asyncio.run(work(step, {})).result["status"] == "done"

    call_in("task-a")
    call_in("task-a")  # a resume re-enters the same node execution
    call_in("task-b")  # a fork or a state edit: another node execution
    assert keys[0] and keys[0] == keys[1], "a resumed call must send the same key"
    assert keys[2] != keys[0], "a fork is new work: it must not reuse the other branch's keys"
