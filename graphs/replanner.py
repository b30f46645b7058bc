"""The replanner node: continue, rewrite the remaining steps, or finish with the answer.

Called when a step failed or flagged a surprise, every `replan_every` completed steps if set, and
when no step can run. Completed steps keep their results: a revision replaces only what has not
run. After `max_replans` revisions, a further revision ends the run as `replan_limit` with the
best answer the results allow, so a run can never loop.

Two prompts: after a surprise or a failure, the full one (plan, statuses, why, the tools for a
revision's tool steps); when the plan simply ran out, a lean one with only the goal and the step
results and a minimal decision (prompts/replanner_end*.txt), since that call happens on every run
and mostly just writes the answer. With plan lines (Context.plan_format, the default) that
decision is plain text: the answer itself, or MORE STEPS and step lines (graphs/plan_text.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import ValidationError

from app.context import Context
from app.models import describe_model_error, role_model
from graphs import events
from graphs.executor import DEPENDENCY_CHARS
from graphs.plan_text import Params, parse_end_text
from graphs.planner import revise_plan
from graphs.result_preview import preview
from graphs.retries import retry_node
from graphs.run_context import run_context
from graphs.schemas import (
    EndDecision,
    ReplanDecision,
    as_decision,
    confined,
    plan_problems,
    plan_tool_set,
    revision_tool_problems,
)
from graphs.state import DONE, FAILED, REPLAN_LIMIT, State, is_done, ready_steps, settled
from graphs.structured import call_structured
from graphs.tool_step import describe_tools, tool_params, tools_for_run
from prompts import render
from prompts.untrusted import wrap

RESULT_CHARS = 1500  # per step in the replanner's prompt
PREVIEW_CHARS = 300  # at most, of a result later steps used, in the end-of-run call


def make_replan(extra_tools: Sequence[BaseTool] = ()) -> Callable[..., Command]:
    """The replanner node; `extra_tools` (from `build_graph(tools=...)`) are tools a revision's
    tool steps may use beside the registry's."""
    extra = list(extra_tools)

    def replan(state: State, runtime: Runtime[Context]) -> Command:
        return _replan(state, runtime, extra)

    return replan


def _replan(state: State, runtime: Runtime[Context], extra: list[BaseTool]) -> Command:
    ctx = run_context(state, runtime)
    plan, results = state.get("plan", []), state.get("results", {})
    done_ids = [s["id"] for s in plan if is_done(s["id"], results)]
    calls = state.get("replanner_calls", 0)
    bookkeeping = {
        "replanner_calls": calls + 1,
        "reviewed_done": len(done_ids),
        "reviewed_at": time.time(),
    }
    lean = _plain_end(state)
    parse_text: Callable[[str], EndDecision] | None = None
    try:
        tools = {t.name: t for t in tools_for_run(ctx, extra)}
        if lean:
            # Every step has run and nothing went wrong: what is left is the answer (or, rarely,
            # more steps). The lean call sends only the goal and the step results, with a
            # minimal schema: it was a third of a run's cost when it re-sent the whole plan.
            lines = ctx.plan_format == "lines"
            messages = [
                SystemMessage(
                    render(
                        "replanner_end_lines" if lines else "replanner_end",
                        dependency_chars=DEPENDENCY_CHARS,
                    )
                ),
                HumanMessage(
                    render(
                        "replanner_end_task",
                        goal=state.get("goal", ""),
                        results=_results(plan, results),
                        review=calls + 1,
                    )
                ),
            ]
            schema: type[ReplanDecision] | type[EndDecision] = EndDecision
            if lines:  # the answer as plain text: no JSON to write around it
                parse_text = partial(
                    _end_of_text, completed=done_ids, params=tool_params(tools.values())
                )
        else:
            messages = [
                SystemMessage(
                    render(
                        "replanner",
                        max_steps=ctx.max_steps,
                        tools=describe_tools(list(tools.values())),
                    )
                ),
                HumanMessage(
                    render(
                        "replanner_task",
                        goal=state.get("goal", ""),
                        progress=_progress(plan, results),
                        why=_why(state),
                        review=calls + 1,
                        replans=state.get("replans", 0),
                        max_replans=ctx.max_replans,
                    )
                ),
            ]
            schema = ReplanDecision
        out = call_structured(
            role_model(ctx, "replanner"),
            schema,
            messages,
            role="replanner",
            model_name=ctx.replanner_model,
            validate=lambda d: _problems(d, plan, results, ctx.max_steps, tools),
            parse_text=parse_text,
            call=calls,
        )
    except Exception as exc:  # a model or provider error ends the run cleanly, with its reason
        if retry_node(exc, runtime):
            raise  # transient: LangGraph's RetryPolicy runs the node again (graphs/retries.py)
        bookkeeping["usage"] = getattr(exc, "usage", {})  # attempts answered before it
        reason = f"replanner model failed: {describe_model_error(exc)}"
        return _end(runtime, bookkeeping, FAILED, reason, state)
    bookkeeping["usage"] = out.usage
    decision = as_decision(out.value) if out.value is not None else None
    if decision is None:
        reason = f"replanner output invalid after {out.attempts} attempts: {out.error}"
        return _end(runtime, bookkeeping, FAILED, reason, state)
    entry = {"action": decision.action, "reason": decision.reason, "at": time.time()}
    if decision.action == "finish":
        bookkeeping.update(history=[entry], response=decision.response or "")
        return _end(runtime, bookkeeping, DONE, "", state, response=decision.response or "")
    if decision.action == "continue":
        events.emit(
            runtime.stream_writer, events.REVIEWED, action="continue", reason=decision.reason
        )
        return Command(goto="executor", update={**bookkeeping, "history": [entry]})
    replans = state.get("replans", 0)
    if replans >= ctx.max_replans:
        reason = f"the replanner asked for revision {replans + 1}; max_replans is {ctx.max_replans}"
        bookkeeping["history"] = [entry]
        return _end(runtime, bookkeeping, REPLAN_LIMIT, reason, state)
    steps = confined(decision.steps or [], plan_tool_set(plan))
    revised, new_steps = revise_plan(plan, results, steps)
    entry["steps"] = new_steps
    events.emit(
        runtime.stream_writer,
        events.REPLANNED,
        reason=decision.reason,
        steps=new_steps,
        replans=replans + 1,
    )
    return Command(
        goto="approval" if ctx.approve_plan else "executor",
        update={
            **bookkeeping,
            "plan": revised,
            "replans": replans + 1,
            "history": [entry],
        },
    )


def decision_problems(
    decision: ReplanDecision,
    plan: list[dict],
    results: dict[str, dict],
    *,
    max_steps: int,
    tools: dict[str, BaseTool] | None = None,
) -> list[str]:
    """What makes `decision` unusable in this state; empty when it can be applied."""
    if decision.action == "finish":
        return [] if (decision.response or "").strip() else ["'finish' needs a non-empty response"]
    if decision.action == "continue":
        if ready_steps(plan, results):
            return []
        waiting = [s["id"] for s in plan if not settled(s, results)]
        detail = f"steps {waiting} wait on failed steps" if waiting else "every step has run"
        return [f"'continue' is not possible: no step can run ({detail}); replan or finish"]
    done = [s["id"] for s in plan if is_done(s["id"], results)]
    steps = decision.steps or []
    return plan_problems(
        steps, max_steps=max_steps, completed=done, tools=tools
    ) + revision_tool_problems(steps, plan_tool_set(plan))


def _problems(
    value: ReplanDecision | EndDecision,
    plan: list[dict],
    results: dict[str, dict],
    max_steps: int,
    tools: dict[str, BaseTool],
) -> list[str]:
    try:
        decision = as_decision(value)
    except ValidationError as exc:
        return [f"the steps do not match the step format: {exc}"]
    return decision_problems(decision, plan, results, max_steps=max_steps, tools=tools)


def _end_of_text(text: str, completed: list[str], params: Params) -> EndDecision:
    """The lean end's text reply (graphs/plan_text.py) as a decision; ValueError if unreadable."""
    return EndDecision.model_validate(parse_end_text(text, completed, params))


def best_answer(state: State) -> str:
    """An answer assembled from completed results, for runs that end without a final one."""
    results = state.get("results", {})
    done = [r for s in state.get("plan", []) if (r := results.get(s["id"])) and r["status"] == DONE]
    if not done:
        return "No step completed, so there is no answer."
    lines = [f"- {r['id']} ({r['description']}): {r['result']}" for r in done]
    return "The run stopped before a final answer. Results so far:\n" + "\n".join(lines)


def _end(
    runtime: Runtime[Context],
    update: dict[str, Any],
    status: str,
    reason: str,
    state: State,
    response: str | None = None,
) -> Command:
    answer = response if response is not None else best_answer(state)
    events.emit(
        runtime.stream_writer, events.FINISHED, status=status, reason=reason, response=answer
    )
    return Command(
        goto=END, update={**update, "status": status, "reason": reason, "response": answer}
    )


def _progress(plan: list[dict], results: dict[str, dict]) -> str:
    """The plan with its results: settled steps in the order they finished, then the steps not
    run yet. A settled result never changes, so each review's text starts with the previous
    review's settled part, byte for byte, and a provider's prompt cache serves it again."""
    lines = []
    for step in _by_finish(plan, results):
        result = results[step["id"]]
        block = _data("result", step["id"], result.get("result") or result.get("error") or "")
        lines.append(f"{_head(step)}\n  status: {result['status']}\n  result:\n{block}")
        if result.get("surprise"):
            lines.append(f"  surprise:\n{_data('surprise', step['id'], result['surprise'])}")
    for step in plan:
        if not settled(step, results):
            lines.append(f"{_head(step)}\n  status: not run yet")
    return "\n".join(lines)


def _head(step: dict) -> str:
    deps = f" (after {', '.join(step['depends_on'])})" if step.get("depends_on") else ""
    return f"[{step['id']}] {step['description']}{deps}"


def _by_finish(plan: list[dict], results: dict[str, dict]) -> list[dict]:
    """The plan's settled steps, in the order their results were made (stable for ties)."""
    done = [s for s in plan if settled(s, results)]
    return sorted(done, key=lambda s: results[s["id"]].get("finished_at", 0))


def _data(kind: str, step_id: str, text: object) -> str:
    """A step's result, error or surprise as an untrusted data block of at most RESULT_CHARS (a
    JSON one keeps every key), the cut said in its label."""
    return _block(f"{kind} of step {step_id}", str(text), RESULT_CHARS, fill=True)


def _block(label: str, text: str, limit: int, *, fill: bool) -> str:
    """`text` as an untrusted data block, previewed in `limit` characters (result_preview.py);
    a cut is said in the label, with the text's length."""
    shown, how = preview(text, limit, fill=fill)
    if how != "whole":
        label += f", {len(text)} chars, {_SHOWN_AS[how].format(n=len(shown))}"
    return wrap(label, shown)


def _results(plan: list[dict], results: dict[str, dict]) -> str:
    """The step results alone, for the lean end: one untrusted block per step, in the order they
    finished (so a second lean review starts with the first one's results).

    A result later steps depend on is shown in part (graphs/result_preview.py, PREVIEW_CHARS):
    those steps carried on what the plan needed of it (a total of look-ups, the summary of a
    page), and re-reading every look-up in full was most of the end call's cost. Any other
    result, which the answer may be written from, is shown up to RESULT_CHARS, a JSON one with
    every key kept. Either cut is said in the block's label, with the result's length: if the
    answer needs more, the model adds a step that depends on it, which sees up to
    DEPENDENCY_CHARS."""
    used = {d for s in plan for d in s.get("depends_on", [])}
    parts = []
    for s in _by_finish(plan, results):
        text = str(results[s["id"]].get("result") or "")
        limit, fill = (PREVIEW_CHARS, False) if s["id"] in used else (RESULT_CHARS, True)
        parts.append(_block(f"step {s['id']}", text, limit, fill=fill))
    return "\n".join(parts)


_SHOWN_AS = {  # how a cut result's preview stands for it (graphs/result_preview.py)
    "outline": "long values cut",
    "compact": "whitespace removed",
    "start": "first {n} shown",
}


def _plain_end(state: State) -> bool:
    """Every step of the plan ran, and none failed or surprised since the last review: the
    replanner is called only because the plan is exhausted."""
    plan, results = state.get("plan", []), state.get("results", {})
    return bool(plan) and all(
        settled(s, results)
        and results[s["id"]]["status"] == DONE
        and not (
            results[s["id"]].get("surprise")
            and results[s["id"]].get("finished_at", 0) >= state.get("reviewed_at", 0.0)
        )
        for s in plan
    )


def _why(state: State) -> str:
    plan, results = state.get("plan", []), state.get("results", {})
    since = state.get("reviewed_at", 0.0)
    reasons = []
    for step in plan:
        result = results.get(step["id"]) if settled(step, results) else None
        if result is None or result.get("finished_at", 0) < since:
            continue
        if result["status"] == FAILED:
            error = _data("error", step["id"], result.get("error"))
            reasons.append(f"step {step['id']} failed:\n{error}")
        elif result.get("surprise"):
            surprise = _data("surprise", step["id"], result["surprise"])
            reasons.append(f"step {step['id']} reported a surprise:\n{surprise}")
    if not ready_steps(plan, results):
        waiting = [s["id"] for s in plan if not settled(s, results)]
        reasons.append(
            f"steps {', '.join(waiting)} cannot run: they wait on failed steps"
            if waiting
            else "every step of the plan has run"
        )
    return "; ".join(reasons) or "periodic review of progress"
