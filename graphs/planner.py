"""The planner node: the goal in, a validated structured plan out (or a clean failure)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from langgraph._internal._runnable import RunnableCallable
from langgraph.config import get_config
from langgraph.runtime import Runtime
from pydantic import ValidationError

from app.context import Context, resolve_context, restore_context
from app.limits import LimitRefused
from app.models import describe_model_error, role_model
from app.usage import merge_usage
from graphs import events, plan_cache
from graphs.aio import run_sync
from graphs.budget import Spend
from graphs.journal import StepJournal, planner_run_id
from graphs.plan_stream import PlanStreamHandler, StepStream
from graphs.plan_text import LineStream, Params, parse_plan_text
from graphs.planner_lookups import Lookups, planner_tools
from graphs.retries import retry_node
from graphs.scheduler import Batch, budget_exceeded, step_work
from graphs.schemas import Plan, PlanStep, plan_problems
from graphs.state import FAILED, RESET, RUNNING, State
from graphs.structured import StructuredResult, acall_structured
from graphs.tool_step import describe_tools, tool_params, tools_for_run
from prompts import render
from prompts.untrusted import goal_problem
from tools import TOOL_NAMES, tool_names


def plan_step_dicts(plan_steps: list[Any], attempts: dict[str, int] | None = None) -> list[dict]:
    """Plan steps as state dicts; `attempt` counts up when a revision retries a failed id. A tool
    step also carries `tool` and `args`."""
    attempts = attempts or {}
    dicts = []
    for s in plan_steps:
        step = {
            "id": s.id,
            "description": s.description,
            "depends_on": list(s.depends_on),
            "attempt": attempts.get(s.id, 0) + 1,
            # The step's tool allow-list, only when the plan gave one (graphs/executor.py).
            **({"tools": list(s.tools)} if getattr(s, "tools", None) is not None else {}),
        }
        if getattr(s, "tool", None):
            step.update(tool=s.tool, args=dict(s.args or {}))
            # A tool step's call says what it does; the planner need not spend tokens on it.
            step["description"] = s.description or f"{s.tool} {json.dumps(s.args or {})}"[:200]
        dicts.append(step)
    return dicts


def revise_plan(
    plan: list[dict], results: dict[str, dict], new_steps: list[Any]
) -> tuple[list[dict], list[dict]]:
    """(the revised plan, its new steps): completed steps kept, the rest replaced by
    `new_steps`; a new step reusing a failed step's id is that step's next attempt."""
    retried = {s.id: results[s.id]["attempts"] for s in new_steps if s.id in results}
    fresh = plan_step_dicts(new_steps, retried)
    kept = [s for s in plan if results.get(s["id"], {}).get("status") == "done"]
    return kept + fresh, fresh


def make_plan(extra_tools: Sequence[BaseTool] = ()) -> RunnableCallable:
    """The planner node; `extra_tools` (from `build_graph(tools=...)`) join the registry's. The
    tools setting is checked against them before any model is paid for."""
    extra = list(extra_tools)

    async def plan(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await _plan(state, runtime, extra)

    def plan_sync(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return run_sync(_plan(state, runtime, extra))

    return RunnableCallable(plan_sync, plan, name="planner")


async def _plan(state: State, runtime: Runtime[Context], extra: list[BaseTool]) -> dict[str, Any]:
    ctx = resolve_context(runtime.context)
    started_at = time.time()  # the run starts here: the wall-clock budget counts from it
    given = state.get("goal")
    if given is not None and not isinstance(given, str):  # a server caller's JSON
        return _fail(runtime, f"the goal must be text, not {type(given).__name__}")
    goal = (given or "").strip()
    if not goal:
        return _fail(runtime, "the input has no goal: pass {'goal': '...'}")
    if problem := goal_problem(goal):
        return _fail(runtime, problem)
    run_id = _run_id()
    # What this node execution kept before it was killed or cancelled (its start, and its plan
    # once whole) comes first. Its context too: steps ran under it while the plan streamed, and
    # a caller who continues the run (with another context, or none) must not change its models,
    # tools or workspace half-way. A cache entry stored since must not be taken either: every
    # step would start afresh under new idempotency keys and those that ran would run again.
    journal = StepJournal.for_current_run(runtime.store, run_id)
    start, recorded = await asyncio.to_thread(journal.planner_records)
    if start is not None and isinstance(start.get("context"), dict):
        try:
            ctx = restore_context(start["context"])
        except ValueError as exc:
            return _fail(runtime, f"the run's recorded context cannot be used: {exc}")
    try:  # MCP servers and import paths are reached here, before any model is paid for
        await asyncio.to_thread(_check_tool_names, ctx, extra)
    except ValueError as exc:
        return _fail(runtime, f"the tools setting cannot be used: {exc}")
    try:
        # Built for their schemas: the planner is told each tool's arguments, and tool steps
        # are checked against them. Off the event loop: it makes folders.
        tools = {t.name: t for t in await asyncio.to_thread(tools_for_run, ctx, extra)}
    except LimitRefused as exc:  # the server's limits (checked first by tools_for_run)
        return _fail(runtime, str(exc))
    except Exception as exc:  # configuration trouble (e.g. a workspace that cannot be made)
        return _fail(runtime, f"tool setup failed: {exc}")
    try:
        lookups = await asyncio.to_thread(_lookups, ctx, runtime)
    except Exception as exc:  # a setting that cannot be used, named before any model is paid
        return _fail(runtime, f"the planner_tools setting cannot be used: {exc}")
    streams = _streams(ctx)  # only a node that streams its plan keeps records
    if start is not None:
        # The run started then (the wall budget counts from it), and its cache decision holds.
        started_at, cache = float(start["started_at"]), plan_cache.Lookup(start.get("cache"))
    else:
        cache = await plan_cache.lookup(ctx, runtime, goal, tools)  # a template's cached plan
    if cache.error:
        return _fail(runtime, cache.error)
    if cache.hit is not None:  # no planner model call (graphs/plan_cache.py)
        hit = cache.hit
        return cache.mark(await _start(ctx, runtime, goal, run_id, hit, None, [], started_at))
    if start is None and streams:
        # Before any step can start in this node: a kill from now on resumes from here.
        record = {"started_at": started_at, "cache": cache.marker, "context": asdict(ctx)}
        await asyncio.to_thread(journal.put_planner_start, record)
    streamed: _StreamedPlan | None = None
    try:
        try:
            # Loading models and tools reads files and makes folders: off the event loop.
            model, messages, streamed = await asyncio.to_thread(
                _setup, ctx, runtime, goal, run_id, journal, extra, tools, lookups, started_at
            )
            if recorded is None:
                out = await acall_structured(
                    model,
                    Plan,
                    messages,
                    role="planner",
                    model_name=ctx.planner_model,
                    validate=lambda p: plan_problems(p.steps, max_steps=ctx.max_steps, tools=tools),
                    callbacks=[streamed.handler] if streamed else (),
                    parse_text=partial(_plan_of_text, params=tool_params(tools.values()))
                    if ctx.plan_format == "lines"
                    else None,
                    lookups=lookups,
                    call=0,
                )
        except Exception as exc:  # a model or provider error ends the run cleanly, with why
            if retry_node(exc, runtime):
                raise  # transient: LangGraph's RetryPolicy runs the node again (graphs/retries.py)
            reason = f"planner model {ctx.planner_model!r} failed: {describe_model_error(exc)}"
            usage = getattr(exc, "usage", None) or {}
            return await _fail_streamed(runtime, streamed, reason, usage)
        if recorded is not None:  # written by this node execution before it was killed
            out, looked = _replayed(recorded)
        else:
            looked = [_looked_up(lookups.made)] if lookups and lookups.made else []
            if streamed is not None and out.value is not None:
                # Steps run in this node until the plan stops for the replanner: kept now, the
                # plan is what a resume after a kill goes on with (journal.put_planner_reply).
                record = _reply_record(out, looked)
                await asyncio.to_thread(journal.put_planner_reply, record)
        return cache.mark(
            await _start(
                ctx, runtime, goal, run_id, out, streamed, looked, started_at, recorded is not None
            )
        )
    finally:
        # Cancelled (the server's runs.cancel) while the plan streamed: the steps already
        # started are cancelled too, not left running after the node.
        if streamed is not None and streamed.batch.running:
            await streamed.batch.cancel()


async def _start(
    ctx: Context,
    runtime: Runtime[Context],
    goal: str,
    run_id: str,
    out: StructuredResult,
    streamed: _StreamedPlan | None,
    looked: list[dict[str, Any]],
    started_at: float,
    recovered: bool = False,
) -> dict[str, Any]:
    """The planner's update for its answer; with a streamed plan, after running the first
    batch of steps (a store failure raises: the node fails and a resume runs it again).
    `recovered`: the plan is the one this node execution wrote before it was killed."""
    if out.value is None:
        reason = f"planner output invalid after {out.attempts} attempts: {out.error}"
        return await _fail_streamed(runtime, streamed, reason, out.usage)
    steps = plan_step_dicts(out.value.steps)
    replayed = {"recovered": True} if recovered else {}
    events.emit(runtime.stream_writer, events.PLAN, steps=steps, **replayed)
    # Everything a previous run on this thread left behind is reset: a thread may hold runs in
    # turn, and the accumulating fields would otherwise mix them.
    update: dict[str, Any] = {
        "goal": goal,
        "run_id": run_id,
        "started_at": started_at,  # when the planner started: the wall-clock budget counts from it
        "context": asdict(ctx),  # what every later node of this run uses (graphs/run_context.py)
        "plan": steps,
        "results": RESET,
        "history": [RESET, *looked],
        "status": RUNNING,
        "reason": "",
        "response": "",
        "replans": 0,
        "replanner_calls": 0,
        "reviewed_done": 0,
        "reviewed_at": 0.0,
        "paused_seconds": 0.0,
        "batch_cut": False,
        "budget_scope": "",
        "counted_turns": {},
        "usage": {**RESET, **out.usage},
    }
    if streamed is None:
        return update
    batch = streamed.batch
    batch.set_plan(steps)  # steps not started yet start now; results of other definitions held
    await batch.drain()
    if recovered:  # steps the killed execution finished under a plan its planner then replaced
        batch.replay_finished(await asyncio.to_thread(batch.journal.records))
    discarded = _discard(runtime, batch.unclaimed(), "the planner's final plan has no such step")
    batch_update = batch.update()
    update.update(
        results={**RESET, **batch_update["results"]},
        usage={**RESET, **merge_usage(out.usage, batch_update["usage"])},
        batch_cut=batch_update["batch_cut"],
        history=[RESET, *looked, *discarded],
    )
    if "status" in batch_update:  # a fatal step error
        update.update(status=batch_update["status"], reason=batch_update["reason"])
        # Steps a budget stopped beside it keep the mark that their paid turns are counted:
        # a resume continues them from their turns (app/runs/runner.py).
        update["counted_turns"] = batch.counted
    elif batch.budget_hit is not None:
        # A budget reached while the plan streamed ends the run here, as the executor would:
        # the steps it stopped mid-way have their turns in this node's journal.
        results, usage = update["results"], update["usage"]
        writer, scope = runtime.stream_writer, batch.journal.scope
        update.update(
            budget_exceeded(
                writer, batch.budget_hit, results, usage, scope=scope, counted=batch.counted
            )
        )
    return update


def _check_tool_names(ctx: Context, extra: list[BaseTool]) -> None:
    known_tools = set(TOOL_NAMES) | {t.name for t in extra}
    tool_names([n for n in ctx.tools if n not in known_tools])


def _setup(
    ctx: Context,
    runtime: Runtime[Context],
    goal: str,
    run_id: str,
    journal: StepJournal,
    extra: list[BaseTool],
    tools: dict[str, BaseTool],
    lookups: Lookups | None,
    started_at: float,
) -> tuple[Any, list[Any], _StreamedPlan | None]:
    """The planner's model and prompt, and the batch steps start in while the plan streams."""
    streamed = _streamed_plan(ctx, runtime, goal, run_id, journal, extra, tools, started_at)
    model = role_model(ctx, "planner")
    if streamed is not None:
        model = _with_stream_usage(model)
    messages = [
        SystemMessage(
            render(
                "planner" if ctx.plan_format == "lines" else "planner_json",
                max_steps=ctx.max_steps,
                tools=describe_tools(list(tools.values())),
            )
            + (render("planner_lookups", calls=lookups.remaining) if lookups else "")
        ),
        HumanMessage(goal),
    ]
    return model, messages, streamed


def _reply_record(out: StructuredResult, looked: list[dict[str, Any]]) -> dict[str, Any]:
    """What the journal keeps of a valid planner answer (graphs/journal.put_planner_reply)."""
    return {
        "plan": out.value.model_dump(mode="json"),
        "steps": plan_step_dicts(out.value.steps),  # as the state will hold them: for `show`
        "usage": out.usage,
        "attempts": out.attempts,
        "looked": looked,
    }


def _replayed(record: dict[str, Any]) -> tuple[StructuredResult, list[dict[str, Any]]]:
    """A journaled planner answer as the call's result: the same plan, and its usage, which no
    checkpoint holds (the node that paid for it never finished), counted once now."""
    out = StructuredResult(
        value=Plan.model_validate(record["plan"]),
        usage=record["usage"],
        attempts=record["attempts"],
    )
    return out, list(record["looked"])


def _lookups(ctx: Context, runtime: Runtime[Context]) -> Lookups | None:
    """The planner's look-ups (Context.planner_tools), or None; ValueError for a setting that
    cannot be used. Each look-up is an event as it is made."""
    tools = planner_tools(ctx)
    if not tools or ctx.max_planner_tool_calls == 0:
        return None
    if ctx.plan_format != "lines":
        raise ValueError("look-ups need plan_format 'lines' (the plan follows them as text)")

    def report(record: dict[str, Any]) -> None:
        events.emit(runtime.stream_writer, events.PLANNER_LOOKUP, **record)

    return Lookups(tools, ctx.max_planner_tool_calls, on_lookup=report)


def _looked_up(made: list[dict[str, Any]]) -> dict[str, Any]:
    """The history entry of the planner's look-ups (`show` lists them)."""
    return {
        "action": "looked_up",
        "by": "planner",
        "reason": f"the planner made {len(made)} look-up(s) before the plan: "
        + ", ".join(str(m["tool"]) for m in made),
        "lookups": made,
        "at": time.time(),
    }


def _plan_of_text(text: str, params: Params) -> Plan:
    """A plan written as lines (graphs/plan_text.py); ValueError naming the bad lines."""
    return Plan(steps=parse_plan_text(text, params=params))


def _with_stream_usage(model: Any) -> Any:
    """The model asking for usage in its streamed replies (OpenAI-compatible endpoints send it
    only when asked, `stream_options.include_usage`): a streamed plan is paid for like any."""
    if "stream_usage" in type(model).model_fields and not model.stream_usage:
        return model.model_copy(update={"stream_usage": True})
    return model


def _run_id() -> str:
    """The run's id (graphs/journal.planner_run_id), or a random one outside a graph."""
    task_id = get_config().get("configurable", {}).get("__pregel_task_id")
    return planner_run_id(task_id) if task_id else uuid.uuid4().hex


class _StreamedPlan:
    """The plan while it streams: each complete step that keeps the plan valid so far is
    offered to `batch` (and starts when its dependencies are done); a retry starts over."""

    def __init__(
        self, batch: Batch, max_steps: int, tools: dict[str, BaseTool], lines: bool
    ) -> None:
        self.batch, self.max_steps, self.tools = batch, max_steps, tools
        self.accepted: list[PlanStep] = []
        self.broken = False
        self.handler = PlanStreamHandler(
            on_step=self.step,
            on_attempt=self.attempt,
            stream=partial(LineStream, tool_params(tools.values())) if lines else StepStream,
        )

    def attempt(self) -> None:
        self.accepted, self.broken = [], False
        self.batch.set_plan([])

    def step(self, obj: dict[str, Any]) -> None:
        # The plan's rules are checked on the prefix (one place: plan_problems). A step that
        # breaks them, or depends on a step not yet seen, starts nothing early: this and later
        # steps wait for the whole reply, which is validated and fed back as usual.
        if self.broken:
            return
        try:
            step = PlanStep.model_validate(obj)
        except ValidationError:
            self.broken = True
            return
        if plan_problems([*self.accepted, step], max_steps=self.max_steps, tools=self.tools):
            self.broken = True
            return
        self.accepted.append(step)
        self.batch.offer(plan_step_dicts([step])[0])


def _streams(ctx: Context) -> bool:
    """Whether steps start while the plan streams: not with plan approval (nothing runs before
    a person approves), not when turned off (Context.stream_plan)."""
    return ctx.stream_plan and not ctx.approve_plan


def _streamed_plan(
    ctx: Context,
    runtime: Runtime[Context],
    goal: str,
    run_id: str,
    journal: StepJournal,
    extra: list[BaseTool],
    tools: dict[str, BaseTool],
    started_at: float,
) -> _StreamedPlan | None:
    """A batch to start steps in while the plan streams, or None: not with plan approval
    (nothing runs before a person approves), not when turned off (Context.stream_plan)."""
    if not _streams(ctx):
        return None
    # Budgets count from the start of the run; the planner's own usage joins at the executor.
    spend = Spend(ctx, {"started_at": started_at})
    try:
        work = step_work(ctx, {"goal": goal, "run_id": run_id}, extra, journal, spend)
    except Exception:  # configuration trouble: the executor node reports it with its reason
        return None
    batch = Batch(ctx, runtime.stream_writer, journal, work, spend=spend)
    return _StreamedPlan(batch, ctx.max_steps, tools, lines=ctx.plan_format == "lines")


def _discard(
    runtime: Runtime[Context], results: list[dict[str, Any]], why: str
) -> list[dict[str, Any]]:
    """Steps that ran while the plan streamed but are in no accepted plan: reported (event and
    history entry), never mixed into the run's results. Their usage is counted."""
    if not results:
        return []
    for result in results:
        events.emit(
            runtime.stream_writer,
            events.STEP_DISCARDED,
            step_id=result["id"],
            description=result.get("description", ""),
            status=result["status"],
            reason=why,
        )
    return [{"action": "discarded", "reason": why, "results": results, "at": time.time()}]


async def _fail_streamed(
    runtime: Runtime[Context], streamed: _StreamedPlan | None, reason: str, usage: dict
) -> dict[str, Any]:
    """The planner failed: steps started from an invalid plan finish (they are paid for) and
    are reported as discarded; the run fails with the reason."""
    if streamed is None:
        return _fail(runtime, reason, usage)
    batch = streamed.batch
    batch.set_plan([])
    await batch.drain()
    discarded = _discard(runtime, batch.unclaimed(), "no valid plan was made")
    if discarded:
        reason += f" ({len(discarded[0]['results'])} step(s) that had started were discarded)"
    update = _fail(runtime, reason, merge_usage(usage, batch.usage))
    update["history"] = [RESET, *discarded]
    return update


def _fail(runtime: Runtime[Context], reason: str, usage: dict | None = None) -> dict[str, Any]:
    events.emit(runtime.stream_writer, events.FINISHED, status=FAILED, reason=reason)
    # A failed start still replaces whatever a previous run on this thread left.
    return {
        "status": FAILED,
        "reason": reason,
        "response": "",
        "plan": [],
        "results": RESET,
        "history": [RESET],
        "usage": {**RESET, **(usage or {})},
        "paused_seconds": 0.0,
    }
