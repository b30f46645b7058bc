"""What a journaled step result may be reused for (graphs/journal.py), and forks from Python."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.runs.demo import demo_context
from graphs.journal import StepJournal, journal_scope, planner_run_id
from graphs.plan_execute import build_graph
from tests.helpers import finished_ids, instant_demo, started_ids
from tests.scripted_runs import run_scenario, write_scenario

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
    assert StepJournal(store, "thread-1", "run-2", "task-a").get(STEP, DEPS) is None  # next run
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


def test_every_field_of_a_steps_definition_is_part_of_its_journal_key() -> None:
    """A tool step edited in its tool, arguments, tools list or dependencies is another step:
    neither its result nor its turns (a tool call's journaled answer) are reused for it."""
    store = InMemoryStore()
    step = {**STEP, "tool": "calculator", "args": {"expression": "1 + 1"}, "tools": ["calculator"]}
    journal("task-a", store).put(step, DEPS, RESULT, {})
    journal("task-a", store).turns(step, DEPS).tool_started(0)
    for edit in (
        {"tool": "sql_query"},
        {"args": {"expression": "2 + 2"}},
        {"tools": ["calculator", "write_file"]},
        {"depends_on": ["s1", "s0"]},
    ):
        edited = {**step, **edit}
        assert journal("task-a", store).get(edited, DEPS) is None, edit
        assert journal("task-a", store).turns(edited, DEPS).records == {}, edit
    assert journal("task-a", store).get(step, DEPS) == {"result": RESULT, "usage": {}}
    started = {"state": "started", "starts": 1}
    assert journal("task-a", store).turns(step, DEPS).tool_call(0) == started


def test_a_planner_retry_that_changes_a_tool_steps_arguments_runs_the_new_call(
    tmp_path: Path,
) -> None:
    """While the plan streams, s1 (a tool step) runs with `1 + 1`; the plan is then refused and
    the retry gives s1 `20 + 22` under the same description. Same node execution, same journal
    scope: only the key's digest of the whole definition keeps the old call's journaled answer
    from being replayed as the new call's."""
    s1 = {"id": "s1", "description": "Compute.", "tool": "calculator"}
    bad = {
        "steps": [
            {**s1, "args": {"expression": "1 + 1"}},
            {"id": "s2", "description": "Use it.", "depends_on": ["nope"]},
        ]
    }
    good = {"steps": [{**s1, "args": {"expression": "20 + 22"}}]}
    script = {
        "name": "unit_journal_retry",
        "goal": "g",
        "tools": ["calculator"],
        "planner": {"attempts": [bad, good]},
        "executor": {},
        "replanner": [{"action": "finish", "reason": "done", "response": "ok"}],
        # The bad reply's second step takes a while to arrive: s1 has run by then.
        "token_latency": {"planner": 0.01},
    }
    r = run_scenario(tmp_path, write_scenario(tmp_path, script), plan_format="json")
    assert r.state["status"] == "done", r.state.get("reason")
    assert r.calls("planner") == 2
    assert r.results["s1"]["result"] == "42"
    assert r.of_kind("step_restarted") == []


def test_an_idempotency_key_is_one_run_step_attempt_and_call() -> None:
    """docs/exactly-once.md: the same when a resumed step repeats the call, different for a new
    attempt the replanner asked for (and for another run, step or call)."""
    from tools.step_context import StepIdentity, ToolCallIdentity

    def key(run: str = "r", step: str = "s1", attempt: int = 1, index: int = 0) -> str:
        return ToolCallIdentity(StepIdentity(run, step, attempt), index).idempotency_key

    assert key() == key()
    others = [key(run="r2"), key(step="s2"), key(attempt=2), key(index=1)]
    assert len({key(), *others}) == 5


# which journal a resume (and `planexec show`) reads for a pending task ------------------------


def _task(name: str, task_id: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, id=task_id)


def test_a_pending_planner_reads_the_journal_of_the_run_it_is_starting() -> None:
    store = InMemoryStore()
    journal = StepJournal.for_pending_task(store, "t", "old-run", [_task("planner", "p1")])
    assert journal.scope == "p1"
    assert journal._namespace[3] == planner_run_id("p1")


def test_a_budget_stop_keeps_its_scope_and_run_even_with_the_planner_pending() -> None:
    """A budget stopped the run while the plan streamed: the stopped steps' turns are in the
    scope it recorded, under the run's own id, not a fresh planner's."""
    store = InMemoryStore()
    tasks = [_task("planner", "p1")]
    journal = StepJournal.for_pending_task(store, "t", "run-1", tasks, budget_scope="X")
    assert (journal.scope, journal._namespace[3]) == ("X", "run-1")


def test_a_pending_executor_reads_its_own_scope() -> None:
    store = InMemoryStore()
    journal = StepJournal.for_pending_task(store, "t", "run-1", [_task("executor", "e1")])
    assert (journal.scope, journal._namespace[3]) == ("e1", "run-1")
