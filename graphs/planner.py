"""The planner node: the goal in, a validated structured plan out (or a clean failure)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from langgraph.runtime import Runtime

from app.context import Context, resolve_context
from app.models import describe_model_error, role_model
from graphs import events
from graphs.retries import retry_node
from graphs.schemas import Plan, plan_problems
from graphs.state import FAILED, RESET, RUNNING, State
from graphs.structured import call_structured
from graphs.tool_step import describe_tools, tools_for_run
from prompts import render
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


def make_plan(extra_tools: Sequence[BaseTool] = ()) -> Callable[..., dict[str, Any]]:
    """The planner node; `extra_tools` (from `build_graph(tools=...)`) join the registry's. The
    tools setting is checked against them before any model is paid for."""
    extra = list(extra_tools)

    def plan(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return _plan(state, runtime, extra)

    return plan


def _plan(state: State, runtime: Runtime[Context], extra: list[BaseTool]) -> dict[str, Any]:
    ctx = resolve_context(runtime.context)
    known_tools = set(TOOL_NAMES) | {t.name for t in extra}
    goal = (state.get("goal") or "").strip()
    if not goal:
        return _fail(runtime, "the input has no goal: pass {'goal': '...'}")
    try:  # MCP servers and import paths are reached here, before any model is paid for
        tool_names([n for n in ctx.tools if n not in known_tools])
    except ValueError as exc:
        return _fail(runtime, f"the tools setting cannot be used: {exc}")
    try:
        # Built for their schemas: the planner is told each tool's arguments, and tool steps
        # are checked against them.
        tools = {t.name: t for t in tools_for_run(ctx, extra)}
    except Exception as exc:  # configuration trouble (e.g. a workspace that cannot be made)
        return _fail(runtime, f"tool setup failed: {exc}")
    try:
        model = role_model(ctx, "planner")
        messages = [
            SystemMessage(
                render(
                    "planner", max_steps=ctx.max_steps, tools=describe_tools(list(tools.values()))
                )
            ),
            HumanMessage(goal),
        ]
        out = call_structured(
            model,
            Plan,
            messages,
            role="planner",
            model_name=ctx.planner_model,
            validate=lambda p: plan_problems(p.steps, max_steps=ctx.max_steps, tools=tools),
            call=0,
        )
    except Exception as exc:  # a model or provider error ends the run cleanly, with its reason
        if retry_node(exc, runtime):
            raise  # transient: LangGraph's RetryPolicy runs the node again (graphs/retries.py)
        reason = f"planner model {ctx.planner_model!r} failed: {describe_model_error(exc)}"
        return _fail(runtime, reason, getattr(exc, "usage", None))
    if out.value is None:
        reason = f"planner output invalid after {out.attempts} attempts: {out.error}"
        return _fail(runtime, reason, out.usage)
    steps = plan_step_dicts(out.value.steps)
    events.emit(runtime.stream_writer, events.PLAN, steps=steps)
    # Everything a previous run on this thread left behind is reset: a thread may hold runs in
    # turn, and the accumulating fields would otherwise mix them.
    return {
        "goal": goal,
        "run_id": uuid.uuid4().hex,
        "context": asdict(ctx),  # what every later node of this run uses (graphs/run_context.py)
        "plan": steps,
        "results": RESET,
        "history": [RESET],
        "status": RUNNING,
        "reason": "",
        "response": "",
        "replans": 0,
        "replanner_calls": 0,
        "reviewed_done": 0,
        "reviewed_at": 0.0,
        "usage": {**RESET, **out.usage},
    }


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
    }
