"""The approval node: a person approves, edits or rejects the plan before it runs.

With `Context.approve_plan` on, the graph pauses here (LangGraph `interrupt`) after the planner
and after every revision that changes the remaining steps. The interrupt's value shows the plan;
the run resumes with `Command(resume=...)`:

    {"action": "approve"}
    {"action": "edit", "steps": [{"id", "description", "depends_on"}, ...]}
    {"action": "reject", "reason": "..."}

The request carries the plan's `revision` (a digest of the steps it shows); an answer that
carries one too is applied only to that revision. A copy of an answer that arrives later (a
second client, a retried request) would otherwise approve whatever plan is waiting by then, a
revision nobody has seen; with the revision it is refused and the run stays paused.

An edit is validated like any plan. An invalid edit (or an answer that is none of the above) is
refused: the node pauses again, with the problems in the interrupt's `error`, and nothing changes.
A refusal ends the node and goes back to it through the graph (`goto="approval"`), so the refused
answer is not kept: inside one node run, LangGraph replays every earlier `interrupt` answer on each
resume, which kept every refused edit in the checkpoint and re-read it on every resume. Only the
(size-capped) reason is kept, in `State.approval_error`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.tools import BaseTool
from langgraph.config import get_config
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt
from pydantic import ValidationError

from app.context import Context
from app.limits import LimitRefused
from graphs import events
from graphs.budget import Spend, describe
from graphs.executor import cut_error  # a refusal quotes the answer: keep what a person needs
from graphs.planner import revise_plan
from graphs.run_clock import paused_after, waited_in_node
from graphs.run_context import run_context
from graphs.schemas import PlanStep, plan_problems
from graphs.state import FAILED, REJECTED, State, is_done, remaining_steps
from graphs.tool_step import tools_for_run

APPROVAL_KIND = "plan_approval"


def make_approve(extra_tools: Sequence[BaseTool] = ()) -> Callable[..., Command]:
    """The approval node; `extra_tools` (from `build_graph(tools=...)`) are tools an edited
    plan's tool steps may use beside the registry's."""
    extra = list(extra_tools)

    def approve(state: State, runtime: Runtime[Context]) -> Command:
        return _approve(state, runtime, extra)

    return approve


def _approve(state: State, runtime: Runtime[Context], extra: list[BaseTool]) -> Command:
    ctx = run_context(state, runtime)
    try:
        tools = {t.name: t for t in tools_for_run(ctx, extra)}
    except LimitRefused as exc:  # the recorded context was edited past the server's limits
        events.emit(runtime.stream_writer, events.FINISHED, status=FAILED, reason=str(exc))
        return Command(goto=END, update={"status": FAILED, "reason": str(exc)})
    plan, results = state.get("plan", []), state.get("results", {})
    done_ids = [s["id"] for s in plan if is_done(s["id"], results)]
    error = state.get("approval_error", "")
    # A budget the run has used up already (the planner's time against a small wall budget):
    # the person is told before answering; an approval then ends the run budget_exceeded, and
    # `resume` with a raised budget runs the approved plan.
    hit = Spend(ctx, state).exceeded()
    budget = f"approving ends the run at once: {describe(hit)}" if hit else ""
    steps = remaining_steps(plan, results)
    revision = plan_revision(steps, done_ids)
    request = {
        "kind": APPROVAL_KIND,
        "revision": revision,
        "goal": state.get("goal", ""),
        "steps": steps,
        "completed": done_ids,
        "replans": state.get("replans", 0),
        "error": error,
        "budget": budget,
        "answers": 'approve: {"action": "approve"}; edit: {"action": "edit", "steps": '
        '[...]}; reject: {"action": "reject", "reason": "..."}; add "revision": '
        f'"{revision}" to any of them so that it answers this plan only',
    }
    events.emit(
        runtime.stream_writer,
        events.PAUSED,
        steps=steps,
        revision=revision,
        error=error,
        budget=budget,
    )
    answer = interrupt(request)
    # The wait for the answer is not working time: the wall-clock budget leaves it out.
    paused = {"paused_seconds": paused_after(state, waited_in_node(get_config()))}
    outcome, error = None, _stale(answer, revision)
    if not error:
        outcome, error = _apply(answer, plan, results, done_ids, ctx.max_steps, tools)
    if outcome is None:
        error = cut_error(error)
        return Command(goto="approval", update={"approval_error": error, **paused})
    update = {**(outcome.update or {}), "approval_error": "", **paused}
    if outcome.goto == END:
        events.emit(
            runtime.stream_writer, events.FINISHED, status=REJECTED, reason=update.get("reason", "")
        )
    elif "plan" in update:  # an edit: views show the new plan
        steps = remaining_steps(update["plan"], results)
        events.emit(runtime.stream_writer, events.PLAN_EDITED, steps=steps)
    return Command(goto=outcome.goto, update=update)


def plan_revision(steps: list[dict], completed: list[str]) -> str:
    """A short digest of the plan an approval request shows: its waiting steps and the completed
    ones it keeps. Two requests with the same digest ask about the same plan."""
    shown = json.dumps({"steps": steps, "completed": completed}, sort_keys=True, default=str)
    return hashlib.sha256(shown.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _stale(answer: Any, revision: str) -> str:
    """Why an answer that names a revision cannot answer this request (empty when it can)."""
    if not isinstance(answer, dict) or "revision" not in answer:
        return ""
    given = answer["revision"]
    if given == revision:
        return ""
    return (
        f"the answer was for plan revision {repr(given)[:40]}, but the plan waiting now is "
        f"revision {revision!r} (it changed after the answer was written): read this plan and "
        "answer it"
    )


def _apply(
    answer: Any,
    plan: list[dict],
    results: dict,
    done_ids: list[str],
    max_steps: int,
    tools: dict[str, BaseTool],
) -> tuple[Command | None, str]:
    """The Command an answer leads to, or (None, why it was refused)."""
    action = answer.get("action") if isinstance(answer, dict) else answer
    if action == "approve":
        return Command(goto="executor", update={"history": [_entry("approved")]}), ""
    if action == "reject":
        reason = str(answer.get("reason", "") if isinstance(answer, dict) else "") or "rejected"
        update = {
            "status": REJECTED,
            "reason": f"plan rejected: {reason}",
            "response": "",
            "history": [_entry("rejected", reason)],
        }
        return Command(goto=END, update=update), ""
    if action == "edit":
        steps, problems = _edited_steps(
            answer.get("steps") or [] if isinstance(answer, dict) else []
        )
        if problems:
            return None, "the edited steps do not match the step format: " + "; ".join(problems)
        problems = plan_problems(steps, max_steps=max_steps, completed=done_ids, tools=tools)
        if problems:
            return None, "the edited plan was refused: " + "; ".join(problems)
        revised, new_steps = revise_plan(plan, results, steps)
        update = {"plan": revised, "history": [_entry("edited", steps=new_steps)]}
        return Command(goto="executor", update=update), ""
    return None, (
        f"unknown answer {answer!r}: resume with action 'approve', 'edit' (with steps) or "
        "'reject' (with a reason)"
    )


def _edited_steps(raw: Any) -> tuple[list[PlanStep], list[str]]:
    """An edit's steps, or one line per problem ("step 2 (s3): description: Input should be a
    valid string"), without pydantic's input dumps and documentation links."""
    if not isinstance(raw, list):
        return [], [f"'steps' must be a list of steps, got {type(raw).__name__}"]
    steps, problems = [], []
    for n, item in enumerate(raw, 1):
        name = f" ({str(item.get('id'))[:40]})" if isinstance(item, dict) and "id" in item else ""
        try:
            steps.append(PlanStep.model_validate(item))
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                where = ".".join(str(p) for p in error["loc"]) or "the step"
                problems.append(f"step {n}{name}: {where}: {error['msg']}")
    return steps, problems


def _entry(action: str, reason: str = "", steps: list | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"action": action, "reason": reason, "at": time.time(), "by": "person"}
    if steps is not None:
        entry["steps"] = steps
    return entry
