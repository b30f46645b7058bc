"""The executor node: runs the plan's ready steps, several at once, each as soon as it can.

Why one node with its own scheduler rather than a `Send` per step: LangGraph runs a superstep's
branches to the end before the next superstep starts, so a step made ready by a fast branch would
wait for every slow branch beside it. Here each step is an asyncio task started the moment its
dependencies are done; each finished step is journaled at once (graphs/journal.py), so a crash
loses only the steps in flight. docs/parallelism.md says more.

Async-native: steps run on the graph's event loop (`ainvoke`/`astream`, the LangGraph server).
A step's model turns are awaited, so cancelling the run (the server's `runs.cancel`) cancels the
steps in flight at once; sync tools run in worker threads, async tools natively. The node also
has a sync face for `graph.invoke`/`graph.stream` (the CLI): it runs the same coroutine on the
process's background event loop (graphs/aio.py).

The same `Batch` serves the streaming planner (graphs/planner.py), which offers each step the
moment its definition has streamed in; steps are matched by `fingerprints` (their definition and
their dependencies' definitions), so a result is only ever used for the exact step it was made for.

Policy on surprises: when a step fails or flags a surprise, no new step starts; the steps already
in flight finish (their work is paid for), then the replanner sees all results at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
import json
import threading
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langgraph._internal._runnable import RunnableCallable
from langgraph.runtime import Runtime

from app.context import Context
from app.limits import LimitRefused
from app.models import role_model, tools_for_model
from app.usage import merge_usage
from graphs import events
from graphs.aio import run_sync
from graphs.budget import Spend, describe, journaled_tool_calls
from graphs.executor import Durability, StepOutcome, arun_step, crashed
from graphs.journal import NO_SCOPE, StepJournal, step_key
from graphs.run_context import run_context
from graphs.state import BUDGET_EXCEEDED, DONE, FAILED, State, is_done, ready_steps
from graphs.tool_step import arun_tool_step, is_tool_step, tools_for_run

# Set by the CLI on Ctrl-C: start no new step; the steps in flight finish and are journaled, the
# node returns, and the run stops at that checkpoint. Process-wide, like the signal behind it.
STOP_LAUNCHING = threading.Event()

# How one step is run: `work(step, deps) -> StepOutcome`. An async function is awaited on the
# event loop; a sync one runs in a worker thread (and may return an awaitable to be awaited).
Work = Callable[[dict[str, Any], dict[str, dict[str, Any]]], Any]


def make_execute(extra_tools: Sequence[BaseTool] = ()) -> RunnableCallable:
    """The executor node; `extra_tools` (from `build_graph(tools=...)`) join the registry's."""
    extra = list(extra_tools)

    async def execute(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await _execute(state, runtime, extra)

    def execute_sync(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return run_sync(_execute(state, runtime, extra))

    return RunnableCallable(execute_sync, execute, name="executor")


def step_work(
    ctx: Context, state: State, extra: list[BaseTool], journal: StepJournal, spend: Spend
) -> Work:
    """How this run's steps are run (raises on configuration trouble: unknown model or tool).
    Each step gets its turn journal (durable turns, idempotent tool calls) and the run's spend
    (budgets), so a step killed mid-way resumes from its last journaled turn."""
    # The server's limits first (tools_for_run enforces them): loading a model may read a
    # scenario file, and a context edited mid-run could name one outside the scenario folder.
    run_tools = tools_for_run(ctx, extra)
    model = role_model(ctx, "executor")
    # A scenario's faults wrap the tools, if the executor model is scripted.
    tools = tools_for_model(ctx.executor_model, run_tools)
    goal, run_id = state.get("goal", ""), state.get("run_id", "")
    counted = state.get("counted_turns", {})
    # Idempotency keys hold the journal's scope: a resume (same node execution) sends the same
    # keys, a fork or a state edit (a new one) is new work and sends new keys.
    if journal.scope != NO_SCOPE:
        run_id = f"{run_id}/{journal.scope}"

    async def work(step: dict[str, Any], deps: dict[str, dict[str, Any]]) -> StepOutcome:
        """One step to its outcome: a tool step runs its tool, any other step its model."""
        durability = Durability(
            # The store is sync here: read it off the event loop.
            turns=await asyncio.to_thread(journal.turns, step, deps),
            unknown_outcome=ctx.unknown_outcome,
            spend=spend,
            deadline_seconds=ctx.step_deadline_seconds,
            tool_timeout_s=ctx.tool_timeout_s,
            counted_turns=counted.get(step_key(step, deps), 0),
        )
        if is_tool_step(step):
            return await arun_tool_step(step, deps, tools, run_id, durability)
        return await arun_step(
            step,
            goal=goal,
            dependencies=deps,
            model=model,
            model_name=ctx.executor_model,
            tools=tools,
            max_tool_calls=ctx.max_tool_calls_per_step,
            run_id=run_id,
            durability=durability,
        )

    return work


async def _execute(
    state: State, runtime: Runtime[Context], extra: list[BaseTool]
) -> dict[str, Any]:
    ctx = run_context(state, runtime)
    # After a budget stop, the steps it stopped mid-way go on from their journaled turns.
    journal = StepJournal.for_current_run(
        runtime.store, state.get("run_id", ""), state.get("budget_scope", "")
    )
    spend = Spend(ctx, state)
    spend.prepay(await asyncio.to_thread(journaled_tool_calls, journal, state))
    if hit := spend.exceeded():  # e.g. the planner alone spent the budget
        return budget_exceeded(
            runtime.stream_writer,
            hit,
            {},
            scope=journal.scope,
            counted=state.get("counted_turns", {}),
        )
    try:
        # Building tools makes folders and opens files: off the event loop.
        work = await asyncio.to_thread(step_work, ctx, state, extra, journal, spend)
    except Exception as exc:  # configuration trouble ends the run with its reason
        reason = str(exc) if isinstance(exc, LimitRefused) else f"executor setup failed: {exc}"
        events.emit(runtime.stream_writer, events.FINISHED, status=FAILED, reason=reason)
        return {"status": FAILED, "reason": reason}
    batch = Batch(
        ctx,
        runtime.stream_writer,
        journal,
        work,
        results=state.get("results", {}),
        reviewed_done=state.get("reviewed_done", 0),
        spend=spend,
        counted=state.get("counted_turns", {}),
    )
    batch.set_plan(state.get("plan", []))
    await batch.drain()
    if batch.budget_hit is not None:
        return budget_exceeded(
            runtime.stream_writer,
            batch.budget_hit,
            batch.new_results,
            batch.usage,
            scope=journal.scope,
            counted=batch.counted,
        )
    if batch.cut and not batch.new_results:
        # Stopped before anything ran: fail the node (it writes nothing) rather than loop
        # executor -> executor; a resume enters the executor again.
        raise RuntimeError("the run was asked to stop before any step started")
    return {**batch.update(), "budget_scope": "", "counted_turns": {}}


def budget_exceeded(
    writer: events.Writer | None,
    hit: dict[str, Any],
    results: dict,
    usage: dict | None = None,
    *,
    scope: str,
    counted: dict[str, int],
) -> dict[str, Any]:
    """End the run: the results that finished are kept; unfinished steps keep their turns, in
    the journal of `scope`, where the executor that continues the run looks for them, and
    `counted` says how many of each one's turns `usage` already holds."""
    reason = describe(hit)
    events.emit(
        writer, events.BUDGET_EXCEEDED, budget=hit["budget"], limit=hit["limit"], spent=hit["spent"]
    )
    events.emit(writer, events.FINISHED, status=BUDGET_EXCEEDED, reason=reason)
    return {
        "results": results,
        "usage": usage or {},
        "status": BUDGET_EXCEEDED,
        "reason": reason,
        "budget": hit,
        "batch_cut": True,  # a resume with a raised budget goes back to the executor
        "budget_scope": scope,
        "counted_turns": counted,
    }


def fingerprints(
    plan: Sequence[dict[str, Any]], known: dict[str, str] | None = None
) -> dict[str, str]:
    """Each step's definition as a short hash: every field but `attempt`, and its dependencies'
    fingerprints, so a result made for a step is never used for a step that differs, or whose
    inputs differ. `known` are fingerprints already computed for steps of the same plan."""
    by_id = {s["id"]: s for s in plan}
    memo: dict[str, str] = dict(known or {})

    def of(s: dict[str, Any], seen: frozenset[str]) -> str:
        if s["id"] in memo:
            return memo[s["id"]]
        deps = [
            of(by_id[d], seen | {s["id"]}) if d in by_id and d not in seen else d
            for d in s.get("depends_on", [])
        ]
        own = {k: v for k, v in s.items() if k != "attempt"}
        text = json.dumps([own, s.get("attempt", 1), deps], sort_keys=True, default=str)
        memo[s["id"]] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return memo[s["id"]]

    return {s["id"]: of(s, frozenset()) for s in plan}


class Batch:
    """The steps one node visit runs, until the plan stops for the replanner.

    The plan may grow while the batch runs (`offer`, from the streaming planner) or be replaced
    (`set_plan`, a planner retry): a step's result is recorded for the current plan only if its
    fingerprint matches a step there; otherwise it is held and, if no step claims it by the end,
    reported by `unclaimed`.
    """

    def __init__(
        self,
        ctx: Context,
        writer: events.Writer | None,
        journal: StepJournal,
        work: Work,
        *,
        results: dict[str, dict[str, Any]] | None = None,
        reviewed_done: int = 0,
        spend: Spend | None = None,
        counted: dict[str, int] | None = None,
    ) -> None:
        self.ctx = ctx
        self.writer = writer
        self.journal = journal
        self.work = work
        self.slots = max(1, ctx.max_concurrency)
        self.plan: list[dict[str, Any]] = []
        self.results = dict(results or {})
        self.new_results: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, dict[str, Any]] = {}
        self.fatal = ""
        self.spend = spend
        self.budget_hit: dict[str, Any] | None = None
        # Step key -> journaled model turns already in the run's usage (State.counted_turns).
        self.counted: dict[str, int] = dict(counted or {})
        self.stop_new = False
        self.cut = False  # stopped by STOP_LAUNCHING, not by the plan: the executor goes on later
        self.finished: dict[str, tuple[dict[str, Any], dict]] = {}  # fingerprint -> (result, usage)
        self.running: dict[str, asyncio.Task[None]] = {}  # fingerprint -> task
        self._fps: dict[str, str] = {}  # step id -> fingerprint, for the current plan
        self._reviewed_done = reviewed_done
        self.review_after: int | None = ctx.replan_every if ctx.replan_every > 0 else None
        self.errors: list[BaseException] = []  # the batch's own failures (a store error)
        # Steps start from the node's context, not from wherever `offer` was called (inside
        # the planner's model call): their traces and config belong to the node.
        self._context = contextvars.copy_context()

    # the plan ---------------------------------------------------------------------------------

    def set_plan(self, plan: list[dict[str, Any]]) -> None:
        """Run `plan`, replacing any plan before it: results this batch recorded stay only for
        steps of the same definition; the others are held (see `unclaimed`)."""
        self.plan = list(plan)
        self._fps = fingerprints(self.plan)
        for step_id, result in list(self.results.items()):
            # A result is only for a step of the same definition: one made for a step since
            # edited (update_state, a fork) or replaced (a planner retry) does not settle it.
            if "fingerprint" in result and result["fingerprint"] != self._fps.get(step_id):
                self.new_results.pop(step_id, None)
                del self.results[step_id]
        if not self.fatal and not self.cut:
            # News from a replaced plan is news only if its step is in this plan too.
            self.stop_new = any(is_news(r) for r in self.new_results.values())
        if self.ctx.replan_every > 0:
            done_now = sum(is_done(s["id"], self.results) for s in plan)
            self.review_after = self.ctx.replan_every - (done_now - self._reviewed_done)
            self.stop_new = self.stop_new or self.review_after <= 0
        self._launch()

    def offer(self, step: dict[str, Any]) -> None:
        """Add one step whose definition is complete; it starts when its dependencies are done."""
        self.plan.append(step)
        # Streamed steps depend only on earlier ones, whose fingerprints do not change.
        self._fps = fingerprints(self.plan, self._fps)
        self._launch()

    def unclaimed(self) -> list[dict[str, Any]]:
        """Results of steps that ran in this batch but match no step of the current plan."""
        claimed = set(self._fps.values())
        return [result for fp, (result, _) in self.finished.items() if fp not in claimed]

    def replay_finished(self, records: Iterable[dict[str, Any]]) -> None:
        """Take the journaled records of a killed execution of this node (`StepJournal.records`)
        for steps of no current definition: a step that started while a plan streamed, which
        the final plan then dropped. `unclaimed` reports them, and their usage, which no
        checkpoint holds, is counted once, as if they had finished in this batch."""
        claimed = set(self._fps.values())
        for record in records:
            fp = record["result"].get("fingerprint")
            if fp and fp not in claimed and fp not in self.finished:
                self.usage = merge_usage(self.usage, record["usage"])
                self.finished[fp] = (record["result"], record["usage"])

    # running ----------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until no step is in flight. Cancelled (the run was cancelled), it cancels the
        steps in flight and starts none; finished steps are already journaled."""
        try:
            while self.running and not self.errors:
                await asyncio.wait(set(self.running.values()), return_when=FIRST_COMPLETED)
        except BaseException:
            await self.cancel()
            raise
        if self.errors:
            # A step result that cannot be journaled must not be reported as kept: fail the node
            # (nothing written), so a resume runs from the last checkpoint and journal.
            await self.cancel()
            raise self.errors[0]

    async def cancel(self) -> None:
        self.stop_new = True
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    def _launch(self) -> None:
        """Start each ready step a slot is free for."""
        if STOP_LAUNCHING.is_set() and not self.stop_new:
            self.cut = self.stop_new = True
        if not self.stop_new and self.spend is not None and (hit := self.spend.exceeded()):
            self.budget_hit, self.stop_new = hit, True
        progressed = True
        while progressed and not self.stop_new:
            progressed = False
            running = {i for i, fp in self._fps.items() if fp in self.running}
            for step in ready_steps(self.plan, self.results, skip=running):
                if self.stop_new or len(self.running) >= self.slots:
                    return
                fp = self._fps[step["id"]]
                if fp in self.finished:  # ran earlier in this batch, for this very definition
                    result, _ = self.finished[fp]
                    self._record(result, {}, recovered=True)
                    progressed = True
                    continue
                deps = {d: self.results[d] for d in step.get("depends_on", [])}
                loop = asyncio.get_running_loop()
                task = loop.create_task(self._run(step, fp, deps), context=self._context.copy())
                self.running[fp] = task
                task.add_done_callback(lambda _t, fp=fp: self._forget(fp))

    def _forget(self, fp: str) -> None:
        self.running.pop(fp, None)

    async def _run(self, step: dict[str, Any], fp: str, deps: dict[str, dict[str, Any]]) -> None:
        try:
            await self._run_step(step, fp, deps)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors.append(exc)
            self.stop_new = True

    async def _run_step(
        self, step: dict[str, Any], fp: str, deps: dict[str, dict[str, Any]]
    ) -> None:
        attempt = step.get("attempt", 1)
        # The journal is read and written in a worker thread: stores are sync here, and under
        # the server a sync store call from the event loop would block every step beside it.
        recorded = await asyncio.to_thread(self.journal.get, step, deps)
        if recorded is not None and recorded["result"].get("fingerprint") == fp:
            outcome, recovered = StepOutcome(recorded["result"], recorded["usage"]), True
        else:
            execution = await self._begin(step, deps)
            events.emit(
                self.writer,
                events.STEP_STARTED,
                step_id=step["id"],
                attempt=attempt,
                description=step["description"],
                execution=execution,
            )
            try:
                outcome = await self._call(step, deps)
            except Exception as exc:  # a bug in a step: its result says so, the rest go on
                outcome = crashed(step, exc)
            if outcome.stopped is not None:  # a budget: not finished, nothing to record
                self.budget_hit, self.stop_new = outcome.stopped, True
                self.usage = merge_usage(self.usage, outcome.usage)
                # Its paid turns are in the run's usage now: the resume that replays them must
                # not count them again. The mark goes into the state with that usage (one
                # checkpoint write), so a kill cannot keep one without the other.
                turns = await asyncio.to_thread(self.journal.turns, step, deps)
                self.counted[step_key(step, deps)] = turns.model_turns
                self._forget(fp)
                return
            outcome.result["fingerprint"] = fp
            await asyncio.to_thread(
                self.journal.put, step, deps, outcome.result, outcome.usage, outcome.last_turn
            )
            recovered = False
        self._forget(fp)
        self._finish(fp, outcome, recovered)
        self._launch()

    async def _begin(self, step: dict[str, Any], deps: dict[str, dict[str, Any]]) -> int:
        """Count one more execution of this step; announce it if it was in flight when an
        earlier process stopped (so a restart is never silent). Returns its number."""
        turns = await asyncio.to_thread(self.journal.turns, step, deps)
        execution = await asyncio.to_thread(turns.begin)
        if execution > 1:
            events.emit(
                self.writer,
                events.STEP_RESTARTED,
                step_id=step["id"],
                attempt=step.get("attempt", 1),
                execution=execution,
                journaled_model_turns=sum(k.startswith("m") for k in turns.records),
                unknown_outcomes=sum(v.get("state") == "started" for v in turns.records.values()),
            )
        return execution

    async def _call(self, step: dict[str, Any], deps: dict[str, dict[str, Any]]) -> StepOutcome:
        if inspect.iscoroutinefunction(self.work):
            return await self.work(step, deps)
        out = await asyncio.to_thread(self.work, step, deps)  # to_thread copies the context
        return await out if isinstance(out, Awaitable) else out

    def _finish(self, fp: str, outcome: StepOutcome, recovered: bool) -> None:
        # Paid for whichever plan it ends up in: usage is counted once, here.
        self.usage = merge_usage(self.usage, outcome.usage)
        self.finished[fp] = (outcome.result, outcome.usage)
        if outcome.fatal:
            self.fatal, self.stop_new = outcome.fatal, True
        if self._fps.get(outcome.result["id"]) == fp:
            self._record(outcome.result, outcome.usage, recovered=recovered)

    def _record(self, result: dict[str, Any], usage: dict, *, recovered: bool) -> None:
        self.results[result["id"]] = result
        self.new_results[result["id"]] = result
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
        if is_news(result):
            # News for the replanner, even when Ctrl-C also cut this batch.
            self.stop_new, self.cut = True, False
        if self.review_after is not None and result["status"] == DONE:
            self.review_after -= 1
            if self.review_after <= 0:
                self.stop_new = True

    def update(self) -> dict[str, Any]:
        """The node's state update for what this batch did."""
        update: dict[str, Any] = {
            "results": self.new_results,
            "usage": self.usage,
            "batch_cut": self.cut,
        }
        if self.fatal:
            events.emit(self.writer, events.FINISHED, status=FAILED, reason=self.fatal)
            update.update(status=FAILED, reason=self.fatal)
        return update


def is_news(result: dict[str, Any]) -> bool:
    """A result the replanner must see before more steps start: a failure or a surprise."""
    return result["status"] != DONE or bool(result.get("surprise"))
