"""Start, resume and inspect runs: what the CLI does, as functions a Python caller can use too.

A run is a LangGraph thread. Beside the checkpoints, the store keeps a small record per run (its
goal and Context) so `resume` runs with the same configuration and `runs` can list them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from app.models import ModelConfigError, check_model
from app.pricing import cost_budget_problem
from app.runs.persistence import Persistence
from graphs.budget import BUDGET_FIELDS
from graphs.journal import StepJournal
from graphs.run_clock import paused_after, waited_since
from graphs.state import (
    BUDGET_EXCEEDED,
    DONE,
    FAILED,
    REJECTED,
    REPLAN_LIMIT,
    RESET,
    RUNNING,
    State,
)

if TYPE_CHECKING:  # imported where a run starts: `runs` and `show` need neither
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import Command

    from app.context import Context

RUNS_NAMESPACE = ("planexec", "runs")
EventHandler = Callable[[dict[str, Any]], None]


class RunNotFound(LookupError):
    """No run has this thread id in this database."""


class RunPaused(RuntimeError):
    """The run waits for a person to approve its plan; `resume` cannot continue it."""


PAUSED = "paused"
FINAL = (DONE, FAILED, REPLAN_LIMIT, REJECTED, BUDGET_EXCEEDED)


def new_thread_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def check_models(ctx: Context) -> None:
    """Fail before any model is paid for if one of the roles cannot be loaded, or, with a cost
    budget, has no known price (a budget that cannot be counted is no budget)."""
    for spec in dict.fromkeys((ctx.planner_model, ctx.executor_model, ctx.replanner_model)):
        check_model(spec)
    if problem := cost_budget_problem(ctx):
        raise ModelConfigError(problem)


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def ensure_new_thread(persistence: Persistence, thread_id: str) -> None:
    """Refuse a thread id that already holds a run (the CLI keeps one run per thread)."""
    if persistence.store.get(RUNS_NAMESPACE, thread_id) is not None:
        raise ValueError(
            f"thread {thread_id!r} already has a run; continue it with "
            f"`{resume_command(persistence, thread_id)}` or pick another --thread"
        )


def resume_command(persistence: Persistence | None, thread_id: str) -> str:
    """`planexec resume ID` with the --db it needs, ready to paste; "" for an in-memory
    database, which keeps nothing to resume."""
    import shlex

    from app.runs.persistence import default_db_url

    url = str(getattr(persistence, "url", ""))
    if url.startswith("memory://"):
        return ""
    db = "" if url in ("", default_db_url()) else f" --db {shlex.quote(persistence.shown)}"
    return f"planexec resume {shlex.quote(thread_id)}{db}"


def submit_run(persistence: Persistence, goal: str, ctx: Context, thread_id: str) -> None:
    """Record a run (its goal and Context) so this process, `resume` or a worker can run it."""
    check_models(ctx)
    ensure_new_thread(persistence, thread_id)
    persistence.store.put(
        RUNS_NAMESPACE,
        thread_id,
        {"goal": goal, "context": asdict(ctx), "created_at": time.time()},
        index=False,
    )


def start_run(
    persistence: Persistence,
    goal: str,
    ctx: Context,
    thread_id: str,
    on_event: EventHandler | None = None,
) -> dict[str, Any]:
    """Run `goal` to the end on thread `thread_id`; return the final state."""
    submit_run(persistence, goal, ctx, thread_id)
    graph = persistence.graph
    return _drive(graph, {"goal": goal}, thread_id, ctx, on_event)


def resume_run(
    persistence: Persistence,
    thread_id: str,
    on_event: EventHandler | None = None,
    budgets: dict[str, Any] | None = None,
    *,
    reopen_failed: bool = False,
) -> dict[str, Any]:
    """Continue an interrupted run from its last checkpoint; finished steps are not rerun, and
    the step in flight replays its journaled turns. `budgets` (Context budget fields) replace
    the recorded ones, so a run that ended `budget_exceeded` can go on with a raised budget.
    `reopen_failed`: a run that failed goes on from the node that failed (a person asked for
    it: `planexec resume`; a worker taking over a dead worker's job does not retry failures)."""
    record = run_record(persistence, thread_id)
    graph = persistence.graph
    snapshot = graph.get_state(_config(thread_id))
    if not snapshot.values and "final_status" in record:  # before a budget unfinishes it
        raise RunNotFound(
            f"run {thread_id!r} ended {record['final_status']} and its checkpoints are gone (a "
            "`planexec prune` stopped part-way): there is nothing to resume; `planexec prune` "
            "removes the rest"
        )
    ctx = _restored(record["context"])
    if budgets:
        ctx = _with_budgets(persistence, thread_id, record, ctx, budgets)
    check_models(ctx)
    if not snapshot.values:  # killed before the first checkpoint: start over
        return _drive(graph, {"goal": record["goal"]}, thread_id, ctx, on_event)
    if snapshot.values.get("status") == BUDGET_EXCEEDED and budgets:
        # Back to the executor; if the budget is still reached it ends the run again at once.
        # A step whose model failed beside the budget stop goes on from its turns too.
        values = snapshot.values
        update = _reopen_steps(persistence, thread_id, values, values.get("budget_scope", ""))
        update.update(status=RUNNING, reason="", context=asdict(ctx))  # nodes read it there
        update["paused_seconds"] = _paused_until_now(snapshot)
        graph.update_state(_config(thread_id), update, as_node="executor")
        return _drive(graph, None, thread_id, ctx, on_event)
    if reopen_failed and snapshot.values.get("status") == FAILED:
        graph_input = _reopen_failed(persistence, thread_id, ctx)
        if graph_input is not _NOT_REOPENED:
            return _drive(graph, graph_input, thread_id, ctx, on_event)
    # Finished is a status, not an empty `next`: a node that completed just before the process
    # stopped leaves its writes pending, `next` empty, and the run still to continue.
    if snapshot.values.get("status") in FINAL:
        # Killed after its final checkpoint but before its record said so: say so now.
        _mark_finished(graph, thread_id, snapshot.values["status"])
        return dict(snapshot.values)
    if snapshot.interrupts:
        raise RunPaused(f"run {thread_id!r} is paused for plan approval; answer it first")
    return _drive(graph, None, thread_id, ctx, on_event)


_NOT_REOPENED = object()


def _reopen_failed(persistence: Persistence, thread_id: str, ctx: Context) -> Any:
    """A run that failed (a model that could not be reached, output it could not use, a step
    that could not run) goes on from the node that failed, with everything before it kept: the
    finished steps, their results, the usage paid, under `ctx` (budgets raised on this resume
    included). Returns the input to go on with (None: from the checkpoint as reopened here; the
    goal: the planner failed before it planned or paid), or _NOT_REOPENED when the failure came
    from no node. ValueError when it cannot go on."""
    graph, config = persistence.graph, _config(thread_id)
    latest, before, node = _failed_node(graph, config)
    failed = latest.values
    # The nodes read the context from the state: budgets raised on this resume go in there.
    reopen = {
        "status": RUNNING,
        "reason": "",
        "response": "",
        "context": asdict(ctx),
        "paused_seconds": _paused_until_now(latest),
    }
    if node == "replanner":
        # The failed review is not a review (its usage, if any was paid, stays counted): what
        # was news before it is news again, and the next review has its number.
        for key in ("reviewed_at", "reviewed_done", "replanner_calls"):
            reopen[key] = before.values.get(key, 0)
        update, as_node = {**reopen, "batch_cut": False}, "executor"  # executor -> replanner
    elif node in ("executor", "planner") and failed.get("plan"):
        task = next((t.id for t in before.tasks if t.name == node), "")
        scope = (before.values.get("budget_scope") if node == "executor" else "") or task
        update = {**_reopen_steps(persistence, thread_id, failed, scope), **reopen}
        as_node = "executor"
    elif node == "planner":
        if problem := reopen_problem(persistence, thread_id):
            raise ValueError(problem)
        update, as_node = None, ""  # nothing was paid or run: plan from the goal
    else:
        return _NOT_REOPENED
    # The record as it is now (a budget raised on this resume is in it already), not finished.
    record = run_record(persistence, thread_id)
    persistence.store.put(RUNS_NAMESPACE, thread_id, _unfinished(record), index=False)
    if update is None:
        return {"goal": record["goal"]}
    graph.update_state(config, update, as_node=as_node)
    return None


def _paused_until_now(snapshot: Any) -> float:
    """The run's waits, with the time it has stood stopped since `snapshot`, its last
    checkpoint: not working time (graphs/run_clock.py)."""
    return paused_after(snapshot.values, waited_since(getattr(snapshot, "created_at", None)))


def _failed_node(graph: CompiledStateGraph, config: dict[str, Any]) -> tuple[Any, Any, str]:
    """(the failed checkpoint, the one its failing node started from, that node's name)."""
    history = list(graph.get_state_history(config, limit=2))  # the failed one, then before it
    if not history:  # recorded, never started: nothing failed
        return SimpleNamespace(values={}, next=()), None, ""
    latest = history[0]
    # Killed after the failing node's writes but before its checkpoint: the node is pending.
    before = latest if latest.next else (history[1] if len(history) == 2 else None)
    return latest, before, before.next[0] if before is not None and before.next else ""


def reopen_problem(persistence: Persistence, thread_id: str) -> str:
    """Why a failed run cannot go on with `resume` ("" when it can, or did not fail): a
    planner that failed after it was paid, or after steps started while its plan streamed.
    Planned afresh, none of that would be counted, and those steps would run again."""
    graph, config = persistence.graph, _config(thread_id)
    latest, _, node = _failed_node(graph, config)
    failed = latest.values
    if failed.get("status") != FAILED or node != "planner" or failed.get("plan"):
        return ""
    ran = any(h.get("action") == "discarded" for h in failed.get("history", []))
    if not failed.get("usage") and not ran:
        return ""
    goal = json.dumps(run_record(persistence, thread_id)["goal"])
    return (
        f"run {thread_id!r} failed in its planner after paying for it (or for steps that "
        "started while the plan streamed): a resume would plan afresh and count none of that. "
        f"Start it again as a new run: planexec run {goal} ..."
    )


def _reopen_steps(
    persistence: Persistence, thread_id: str, values: dict[str, Any], scope: str
) -> dict[str, Any]:
    """The update that sends a run back to the executor (through the edge a batch cut short
    takes), continuing the node execution `scope`'s journal as a budget resume does
    (`budget_scope`): the steps that finished keep their results; each step whose model failed
    the run (`fatal`) loses its result and goes on from its journaled turns, so a tool call it
    made is not made again and its paid turns are not counted twice (`counted_turns`). When a
    failure or surprise the replanner has not seen is among the results, it goes there first,
    as the run would have: no new step starts before it has looked."""
    results = values.get("results", {})
    fatal = [k for k, r in results.items() if r.get("fatal")]
    update: dict[str, Any] = {"batch_cut": True, "budget_scope": scope}
    if not fatal:
        return update
    journal = StepJournal(persistence.store, thread_id, values.get("run_id", ""), scope)
    counted = dict(values.get("counted_turns") or {})
    for step_id in fatal:
        for key in journal.forget_result(step_id):
            counted[key] = journal.model_turns_of(key)
    kept = {k: r for k, r in results.items() if k not in fatal}
    seen = values.get("reviewed_at", 0.0)
    news = any(
        (r.get("status") != DONE or r.get("surprise")) and r.get("finished_at", 0) >= seen
        for r in kept.values()
    )
    update.update(batch_cut=not news, counted_turns=counted, results={**RESET, **kept})
    return update


def _with_budgets(
    persistence: Persistence,
    thread_id: str,
    record: dict[str, Any],
    ctx: Context,
    budgets: dict[str, Any],
) -> Context:
    """`ctx` with new budgets, recorded so a later resume or worker keeps them."""
    unknown = set(budgets) - {*BUDGET_FIELDS, "step_deadline_seconds"}
    if unknown:
        raise ValueError(f"not budget fields: {', '.join(sorted(unknown))}")
    from app.context import replaced

    ctx = replaced(ctx, **budgets)
    check_models(ctx)  # e.g. a cost budget on a model with no known price
    record = {**_unfinished(record), "context": asdict(ctx)}
    persistence.store.put(RUNS_NAMESPACE, thread_id, record, index=False)
    return ctx


def _unfinished(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record without its final status: it goes on, so workers must not skip it."""
    return {k: v for k, v in record.items() if k not in ("final_status", "finished_at")}


def answer_approval(
    persistence: Persistence,
    thread_id: str,
    answer: dict[str, Any],
    on_event: EventHandler | None = None,
) -> dict[str, Any]:
    """Resume a paused run with a person's answer: approve, edit (steps) or reject (reason)."""
    record = run_record(persistence, thread_id)
    ctx = _restored(record["context"])
    if answer.get("action") != "reject":  # rejecting runs nothing; anything else runs models,
        check_models(ctx)  # and a run continued without its keys would fail for good
    graph = persistence.graph
    if not graph.get_state(_config(thread_id)).interrupts:
        raise ValueError(f"run {thread_id!r} is not waiting for approval")
    from langgraph.types import Command

    return _drive(graph, Command(resume=answer), thread_id, ctx, on_event)


def _drive(
    graph: CompiledStateGraph,
    graph_input: dict[str, Any] | Command | None,
    thread_id: str,
    ctx: Context,
    on_event: EventHandler | None,
) -> dict[str, Any]:
    # durability="sync": each checkpoint is on disk before the next node starts.
    for chunk in graph.stream(
        graph_input,
        config=_config(thread_id),
        context=ctx,
        stream_mode="custom",
        durability="sync",
    ):
        if on_event is not None:
            on_event(chunk)
    state = _with_pause(graph.get_state(_config(thread_id)))
    if state.get("status") in FINAL:
        _mark_finished(graph, thread_id, state["status"])
    return state


def _mark_finished(graph: CompiledStateGraph, thread_id: str, status: str) -> None:
    """Note the final status in the run's record, so workers skip it without reading its state."""
    store = graph.store
    item = store.get(RUNS_NAMESPACE, thread_id) if store is not None else None
    if item is not None:
        record = {**item.value, "final_status": status, "finished_at": time.time()}
        store.put(RUNS_NAMESPACE, thread_id, record, index=False)


def mark_finished(persistence: Persistence, thread_id: str, status: str) -> None:
    """Record a finished run's final status (for runs whose process died before it could)."""
    _mark_finished(persistence.graph, thread_id, status)


def _with_pause(snapshot: Any) -> dict[str, Any]:
    """The snapshot's values; a run waiting for approval gets status `paused` and the request."""
    state = dict(snapshot.values)
    if snapshot.interrupts:
        state["status"] = PAUSED
        state["approval_request"] = snapshot.interrupts[0].value
    return state


def run_record(persistence: Persistence, thread_id: str) -> dict[str, Any]:
    item = persistence.store.get(RUNS_NAMESPACE, thread_id)
    if item is None:
        raise RunNotFound(
            f"no run with thread id {thread_id!r} in {persistence.shown}; "
            "`planexec runs` lists the runs there (use --db for another database)"
        )
    return dict(item.value)


def run_state(persistence: Persistence, thread_id: str) -> dict[str, Any]:
    """A run's state for display: the checkpoint, plus steps journaled after it, plus its goal.

    A run killed mid-batch has finished steps in the journal that no checkpoint holds yet;
    they are shown (and `resume` will take them, not rerun them).
    """
    record = run_record(persistence, thread_id)
    snapshot = _snapshot(persistence, thread_id)
    state = _with_pause(snapshot)
    state.setdefault("goal", record["goal"])
    state["thread_id"] = thread_id
    state["created_at"] = record.get("created_at")
    state["context"] = record.get("context", {})
    results = dict(state.get("results", {}))
    journal = StepJournal.for_pending_task(
        persistence.store,
        thread_id,
        state.get("run_id", ""),
        snapshot.tasks,
        state.get("budget_scope", ""),
    )
    if not state.get("plan") and (reply := journal.planner_reply()):
        # Killed in the planner node after its plan was whole: no checkpoint holds the plan yet.
        state["plan"] = reply.get("steps", [])
    for step_id, result in journal.all().items():
        if result["attempts"] > results.get(step_id, {}).get("attempts", 0):
            results[step_id] = {**result, "journaled": True}
    state["results"] = results
    if not snapshot.values:
        state["status"] = _unstarted_status(persistence, thread_id, record)
    elif state.get("status", RUNNING) == RUNNING:
        state["status"] = "interrupted"  # or running right now in another process
    state.setdefault("status", RUNNING)
    return state


def _unstarted_status(persistence: Persistence, thread_id: str, record: dict[str, Any]) -> str:
    """The status of a recorded run with no checkpoint: its final status if it had one (a prune
    stopped between deleting the checkpoints and the record), `queued` while a job for it waits
    in the queue, else `interrupted` (a `run --queue` killed between its record and its job, a
    `run` killed as it started, a job a worker could not run: `resume` starts it)."""
    from app.runs.worker import has_job

    if "final_status" in record:
        return str(record["final_status"])
    return "queued" if has_job(persistence, thread_id) else "interrupted"


def _restored(values: dict[str, Any]) -> Context:
    from app.context import restore_context  # imports every tool: only when a run goes on

    return restore_context(values)


def _snapshot(persistence: Persistence, thread_id: str) -> Any:
    """The run's latest state (`.values`, `.interrupts`, `.tasks`). A run that has ended is read
    from the checkpointer alone: nothing is pending, so `runs` and `show` need not compile the
    graph, whose imports (LangChain, every tool) were most of their startup time. Any other run
    (interrupted, paused, running) is read through the graph, which knows its pending tasks and
    open interrupts."""
    config = _config(thread_id)
    saved = persistence.checkpointer.get_tuple(config)
    if saved is None:
        return SimpleNamespace(values={}, interrupts=(), tasks=())
    channels = saved.checkpoint.get("channel_values", {})
    if channels.get("status") not in FINAL or saved.pending_writes:
        return persistence.graph.get_state(config)
    values = {k: v for k, v in channels.items() if k in State.__annotations__}
    return SimpleNamespace(values=values, interrupts=(), tasks=())


def run_records(persistence: Persistence) -> list[tuple[str, dict[str, Any]]]:
    """(thread id, record) of every run in this database, oldest first."""
    records: list[tuple[str, dict[str, Any]]] = []
    page = 1000
    while True:  # the store pages its results; read them all
        items = persistence.store.search(RUNS_NAMESPACE, limit=page, offset=len(records))
        records += [(item.key, dict(item.value)) for item in items]
        if len(items) < page:
            break
    records.sort(key=lambda r: r[1].get("created_at", 0))
    return records


def list_runs(persistence: Persistence, limit: int = 100) -> list[dict[str, Any]]:
    """Runs in this database, newest first."""
    newest = run_records(persistence)[::-1][:limit]
    return [run_state(persistence, thread_id) for thread_id, _ in newest]
