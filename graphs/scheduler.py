"""The executor node: runs the plan's ready steps, several at once, each as soon as it can.

Why one node with its own scheduler rather than a `Send` per step: LangGraph runs a superstep's
branches to the end before the next superstep starts, so a step made ready by a fast branch would
wait for every slow branch beside it. Here a thread pool starts each step the moment its
dependencies are done; each finished step is journaled at once (graphs/journal.py), so a crash
loses only the steps in flight. docs/parallelism.md says more.

Policy on surprises: when a step fails or flags a surprise, no new step starts; the steps already
in flight finish (their work is paid for), then the replanner sees all results at once.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime

from app.context import Context
from app.models import role_model, tools_for_model
from app.usage import merge_usage
from graphs import events
from graphs.executor import StepOutcome, crashed, run_step
from graphs.journal import StepJournal
from graphs.run_context import run_context
from graphs.state import DONE, FAILED, State, is_done, ready_steps
from graphs.tool_step import is_tool_step, run_tool_step, tools_for_run

# Set by the CLI on Ctrl-C: start no new step; the steps in flight finish and are journaled, the
# node returns, and the run stops at that checkpoint. Process-wide, like the signal behind it.
STOP_LAUNCHING = threading.Event()


def make_execute(extra_tools: Sequence[BaseTool] = ()) -> Callable[..., dict[str, Any]]:
    """The executor node; `extra_tools` (from `build_graph(tools=...)`) join the registry's."""
    extra = list(extra_tools)

    def execute(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return _execute(state, runtime, extra)

    return execute


def _execute(state: State, runtime: Runtime[Context], extra: list[BaseTool]) -> dict[str, Any]:
    ctx = run_context(state, runtime)
    try:
        model = role_model(ctx, "executor")
        # A scenario's faults wrap the tools, if the executor model is scripted.
        tools = tools_for_model(ctx.executor_model, tools_for_run(ctx, extra))
    except Exception as exc:  # configuration trouble ends the run with its reason
        reason = f"executor setup failed: {exc}"
        events.emit(runtime.stream_writer, events.FINISHED, status=FAILED, reason=reason)
        return {"status": FAILED, "reason": reason}
    batch = _Batch(
        state, ctx, runtime, StepJournal.for_current_run(runtime.store, state.get("run_id", ""))
    )
    run_id = state.get("run_id", "")

    def work(step: dict[str, Any], deps: dict[str, dict[str, Any]]) -> StepOutcome:
        """One step to its outcome: a tool step runs its tool, any other step its model."""
        if is_tool_step(step):
            return run_tool_step(step, deps, tools, run_id)
        return run_step(
            step,
            goal=state.get("goal", ""),
            dependencies=deps,
            model=model,
            model_name=ctx.executor_model,
            tools=tools,
            max_tool_calls=ctx.max_tool_calls_per_step,
            run_id=run_id,
        )

    batch.run(work)
    if batch.cut and not batch.new_results:
        # Stopped before anything ran: fail the node (it writes nothing) rather than loop
        # executor -> executor; a resume enters the executor again.
        raise RuntimeError("the run was asked to stop before any step started")
    update: dict[str, Any] = {
        "results": batch.new_results,
        "usage": batch.usage,
        "batch_cut": batch.cut,
    }
    if batch.fatal:
        events.emit(runtime.stream_writer, events.FINISHED, status=FAILED, reason=batch.fatal)
        update.update(status=FAILED, reason=batch.fatal)
    return update


class _Batch:
    """The steps one visit to the executor node runs, until the plan stops for the replanner."""

    def __init__(
        self, state: State, ctx: Context, runtime: Runtime[Context], journal: StepJournal
    ) -> None:
        self.plan = state.get("plan", [])
        self.results = dict(state.get("results", {}))
        self.ctx = ctx
        self.writer = runtime.stream_writer
        self.journal = journal
        self.new_results: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, dict[str, Any]] = {}
        self.fatal = ""
        self.stop_new = False
        self.cut = False  # stopped by STOP_LAUNCHING, not by the plan: the executor goes on later
        # Steps this visit may complete before a periodic review (Context.replan_every).
        done_now = sum(is_done(s["id"], self.results) for s in self.plan)
        since_review = done_now - state.get("reviewed_done", 0)
        self.review_after = ctx.replan_every - since_review if ctx.replan_every > 0 else None

    def run(self, work: Any) -> None:
        slots = max(1, self.ctx.max_concurrency)
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="planexec-step")
        in_flight: dict[Future[StepOutcome], tuple[dict[str, Any], dict[str, Any]]] = {}
        clean = False
        try:
            self._launch(pool, in_flight, slots, work)
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    step, deps = in_flight.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:
                        outcome = crashed(step, exc)
                    self.journal.put(step, deps, outcome.result, outcome.usage)
                    self._record(outcome.result, outcome.usage, recovered=False)
                    if outcome.fatal:
                        self.fatal, self.stop_new = outcome.fatal, True
                self._launch(pool, in_flight, slots, work)
            clean = True
        finally:
            # Only an exception out of this loop gets here unclean: do not wait for the steps in
            # flight then (resume runs them again); the checkpoint and journal are consistent.
            pool.shutdown(wait=clean, cancel_futures=not clean)

    def _launch(self, pool: ThreadPoolExecutor, in_flight: dict, slots: int, work: Any) -> None:
        """Start each ready step a slot is free for; take journaled results rather than rerun."""
        if STOP_LAUNCHING.is_set() and not self.stop_new:
            self.cut = self.stop_new = True
        progressed = True
        while progressed and not self.stop_new:
            progressed = False
            running = {s["id"] for s, _ in in_flight.values()}
            for step in ready_steps(self.plan, self.results, skip=running):
                if self.stop_new or len(in_flight) >= slots:
                    return
                deps = {d: self.results[d] for d in step.get("depends_on", [])}
                recorded = self.journal.get(step, deps)
                if recorded is not None:
                    self._record(recorded["result"], recorded["usage"], recovered=True)
                    progressed = True
                    continue
                events.emit(
                    self.writer,
                    events.STEP_STARTED,
                    step_id=step["id"],
                    attempt=step.get("attempt", 1),
                    description=step["description"],
                )
                # Each step runs in a copy of this context so tracing and config follow it.
                future = pool.submit(contextvars.copy_context().run, work, step, deps)
                in_flight[future] = (step, deps)

    def _record(self, result: dict[str, Any], usage: dict, *, recovered: bool) -> None:
        self.results[result["id"]] = result
        self.new_results[result["id"]] = result
        self.usage = merge_usage(self.usage, usage)
        events.emit(
            self.writer,
            events.STEP_FINISHED,
            step_id=result["id"],
            status=result["status"],
            surprise=result.get("surprise", ""),
            error=result.get("error", ""),
            result=str(result.get("result", ""))[:500],
            usage=usage,
            recovered=recovered,
            started_at=result.get("started_at"),
            finished_at=result.get("finished_at"),
        )
        if result["status"] != DONE or result.get("surprise"):
            # News for the replanner, even when Ctrl-C also cut this batch.
            self.stop_new, self.cut = True, False
        if self.review_after is not None and result["status"] == DONE:
            self.review_after -= 1
            if self.review_after <= 0:
                self.stop_new = True
