"""One step, run by the executor model with its tools.

The executor sees the goal, its step and the results of the steps it depends on, nothing else.
It cannot change the plan: it returns a result, a status, the tool calls it made, and maybe a
surprise for the replanner. A tool that raises, a quota error, or the tool-call cap fails the step
(the replanner decides what next); only a FatalModelError (e.g. a scenario bug) stops the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from app.models import FatalModelError, describe_model_error
from app.usage import merge_usage, usage_of_call
from graphs.state import DONE, FAILED
from graphs.structured import call_config
from prompts import render
from tools.step_context import StepIdentity, ToolCallIdentity, calling_tool, running_step

DEPENDENCY_CHARS = 4000  # a dependency's result is cut here: enough to act on, cheap to send
OUTPUT_PREVIEW_CHARS = 500
EMPTY_OUTPUTS = ("", "[]", "{}", "null", "none")


@tool
def flag_surprise(reason: str) -> str:
    """Tell the planner the world is not as the plan assumed (missing data, a result that makes
    the rest of the plan wrong). Then reply with what you found."""
    return "Noted; the replanner will see it. Now reply with what you found."


@dataclass
class StepOutcome:
    """A finished step: its result for the state, its usage, and a fatal error if any."""

    result: dict[str, Any]
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    fatal: str = ""


def run_step(
    step: dict[str, Any],
    *,
    goal: str,
    dependencies: dict[str, dict[str, Any]],
    model: BaseChatModel,
    model_name: str,
    tools: list[BaseTool],
    max_tool_calls: int,
    run_id: str = "",
) -> StepOutcome:
    """Run `step` to a result. Never raises for model or tool trouble: it becomes the result."""
    identity = StepIdentity(run_id, step["id"], step.get("attempt", 1))
    with running_step(identity):
        return _run_step(step, goal, dependencies, model, model_name, tools, max_tool_calls, run_id)


def _run_step(
    step: dict[str, Any],
    goal: str,
    dependencies: dict[str, dict[str, Any]],
    model: BaseChatModel,
    model_name: str,
    tools: list[BaseTool],
    max_tool_calls: int,
    run_id: str,
) -> StepOutcome:
    run = _StepRun(step, tools, run_id)
    messages: list[BaseMessage] = [
        SystemMessage(render("executor", max_tool_calls=max_tool_calls)),
        HumanMessage(
            render(
                "executor_task",
                goal=goal,
                step_id=step["id"],
                attempt=step.get("attempt", 1),
                description=step["description"],
                dependencies=_format_dependencies(dependencies),
            )
        ),
    ]
    bound = model.bind_tools([*tools, flag_surprise])
    config = call_config("executor", step=step["id"], attempt=step.get("attempt", 1))
    usage: dict[str, dict[str, Any]] = {}
    # Each turn either ends the step or makes at least one tool call, so this bound is enough;
    # the +2 leaves room for a flag_surprise turn and the final reply.
    for _ in range(max_tool_calls + 2):
        try:
            reply: AIMessage = bound.invoke(messages, config=config)
        except FatalModelError as exc:
            return StepOutcome(run.finish(FAILED, error=str(exc)), usage, fatal=str(exc))
        except Exception as exc:  # provider trouble is a step result the replanner can act on
            return StepOutcome(run.finish(FAILED, error=_describe_model_error(exc)), usage)
        usage = merge_usage(usage, usage_of_call("executor", reply, model_name))
        messages.append(reply)
        if not reply.tool_calls:
            return StepOutcome(run.finish(DONE, text=_text_of(reply)), usage)
        for call in reply.tool_calls:
            answer = run.call_tool(call, max_tool_calls)
            if run.error:
                return StepOutcome(run.finish(FAILED, error=run.error), usage)
            messages.append(answer)
    return StepOutcome(
        run.finish(FAILED, error=f"no final answer after {max_tool_calls + 2} model turns"), usage
    )


class _StepRun:
    """Bookkeeping for one attempt of a step: tool calls made, surprise, first error."""

    def __init__(self, step: dict[str, Any], tools: list[BaseTool], run_id: str = ""):
        self.step = step
        self.identity = StepIdentity(run_id, step["id"], step.get("attempt", 1))
        self.tools = {t.name: t for t in tools}
        self.calls: list[dict[str, Any]] = []
        self.surprise = ""
        self.error = ""
        self.started_at = time.time()

    def call_tool(self, call: dict[str, Any], max_tool_calls: int) -> ToolMessage:
        name, args, call_id = call["name"], call.get("args", {}), call.get("id") or ""
        if name == flag_surprise.name:
            self.surprise = str(args.get("reason", "")) or "the executor flagged a surprise"
            # .func, not .invoke(args): malformed arguments must not raise out of the step.
            return ToolMessage(
                content=flag_surprise.func(self.surprise), tool_call_id=call_id, name=name
            )
        # Times let a report draw each tool call, and the model turns between them.
        record: dict[str, Any] = {"name": name, "args": args, "ok": False}
        record["started_at"] = time.time()
        self.calls.append(record)
        if len(self.calls) > max_tool_calls:
            self.error = f"tool call cap reached: a step may make {max_tool_calls} tool calls"
            record["output"] = self.error
            return ToolMessage(content=self.error, tool_call_id=call_id, status="error")
        try:
            identity = ToolCallIdentity(self.identity, len(self.calls) - 1)
            with calling_tool(identity):
                answer = self._invoke(name, args, call_id)
        except Exception as exc:  # a raising tool is a failed step, never a crash
            record["finished_at"] = time.time()
            self.error = f"tool {name} failed: {exc}"
            record["output"] = str(exc)[:OUTPUT_PREVIEW_CHARS]
            return ToolMessage(content=self.error, tool_call_id=call_id, status="error")
        record["finished_at"] = time.time()
        output = answer.content if isinstance(answer.content, str) else json.dumps(answer.content)
        empty = _is_empty(answer)
        record.update(ok=True, output=output[:OUTPUT_PREVIEW_CHARS], empty=empty)
        if empty and not self.surprise:
            self.surprise = f"{name} returned an empty result for {json.dumps(args)[:200]}"
        return answer

    def _invoke(self, name: str, args: dict[str, Any], call_id: str) -> ToolMessage:
        tool_ = self.tools.get(name)
        if tool_ is None:
            raise LookupError(
                f"unknown tool {name!r}; this step can use: {', '.join(sorted(self.tools))}"
            )
        answer = tool_.invoke({"type": "tool_call", "name": name, "args": args, "id": call_id})
        if not isinstance(answer, ToolMessage):  # a tool that returns a Command or raw value
            answer = ToolMessage(content=str(answer), tool_call_id=call_id, name=name)
        return answer

    def finish(self, status: str, *, text: str = "", error: str = "") -> dict[str, Any]:
        return {
            "id": self.step["id"],
            "description": self.step["description"],
            "status": status,
            "result": text,
            "error": error,
            "surprise": self.surprise,
            "attempts": self.step.get("attempt", 1),
            "tool_calls": self.calls,
            "started_at": self.started_at,
            "finished_at": time.time(),
        }


def crashed(step: dict[str, Any], exc: BaseException) -> StepOutcome:
    """A step whose code raised (a bug, not model or tool trouble): a failed result, journaled
    like any other, so the steps beside it keep their results."""
    return StepOutcome(_StepRun(step, []).finish(FAILED, error=f"the step crashed: {exc!r}"))


def _is_empty(answer: ToolMessage) -> bool:
    artifact = answer.artifact
    if isinstance(artifact, dict) and artifact.get("empty"):
        return True
    content = answer.content if isinstance(answer.content, str) else json.dumps(answer.content)
    return content.strip().lower() in EMPTY_OUTPUTS


def _text_of(reply: AIMessage) -> str:
    if isinstance(reply.content, str):
        return reply.content
    return "".join(b.get("text", "") for b in reply.content if isinstance(b, dict))


def _describe_model_error(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    if status == 429 or "ratelimit" in type(exc).__name__.lower() or "quota" in str(exc).lower():
        return f"quota error from the executor model: {exc}"
    return f"executor model error ({type(exc).__name__}): {describe_model_error(exc)}"


def _format_dependencies(dependencies: dict[str, dict[str, Any]]) -> str:
    if not dependencies:
        return "(none: this step depends on no other step)"
    lines = []
    for dep_id, result in dependencies.items():
        text = str(result.get("result", ""))
        if len(text) > DEPENDENCY_CHARS:
            text = text[:DEPENDENCY_CHARS] + f" ... [cut at {DEPENDENCY_CHARS} characters]"
        lines.append(f"[{dep_id}] {result.get('description', '')}\n{text}")
    return "\n\n".join(lines)
