"""One step, run by the executor model with its tools.

The executor sees the goal, its step and the results of the steps it depends on, nothing else.
It cannot change the plan: it returns a result, a status, the tool calls it made, and maybe a
surprise for the replanner. A tool that raises, a quota error, or the tool-call cap fails the step
(the replanner decides what next); only a FatalModelError (e.g. a scenario bug) stops the run.

Durability (docs/exactly-once.md): with a turn journal (graphs/journal.StepTurns), each model
reply and each tool answer is written the moment it exists, and a tool call gets a "started"
record before it is sent. A step run again after a crash replays what the journal holds and goes
on from the first turn with no record; the only call that can be sent twice is one that was
started with no answer, and it goes out with the same idempotency key (or, with
Context.unknown_outcome="surprise", not at all). Budgets (graphs/budget.Spend) are checked before
each model turn and tool call: a budget reached stops the step unfinished, its turns kept.

One turn loop, async (`arun_step`): store reads and writes go to a worker thread, since a sync
store call on the server's event loop would block every step beside it; `run_step` is its sync
face for callers outside the graph.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.tools import BaseTool, tool

from app.models import FatalModelError, describe_model_error
from app.usage import merge_usage, usage_of_call
from graphs.aio import invoke_tool, run_sync
from graphs.budget import Spend
from graphs.journal import StepTurns
from graphs.state import DONE, FAILED
from graphs.structured import call_config
from prompts import render
from prompts.untrusted import storable, storable_message, wrap
from tools.step_context import StepIdentity, ToolCallIdentity, calling_tool, running_step

DEPENDENCY_CHARS = 4000  # a dependency's result is cut here: enough to act on, cheap to send
OUTPUT_PREVIEW_CHARS = 500
# Any tool's answer is cut here: the built-in tools cap their own output below it (http's 1 MB
# body is the largest), but an MCP server or an import-path tool can answer with anything, and
# the answer is journaled, checkpointed and sent to a model.
MAX_TOOL_OUTPUT_CHARS = 1_100_000
# A step's error or surprise is cut here: what went wrong is said at the start, and a tool that
# raises with its whole answer in the message (an MCP tool's error result) would otherwise put
# megabytes into the step's result, its events, the journal and the model's next turn.
MAX_ERROR_CHARS = 4_000
EMPTY_OUTPUTS = ("", "[]", "{}", "null", "none")


@tool
def flag_surprise(reason: str) -> str:
    """Tell the planner the world is not as the plan assumed (missing data, a result that makes
    the rest of the plan wrong). Then reply with what you found."""
    return "Noted; the replanner will see it. Now reply with what you found."


@dataclass
class StepOutcome:
    """A finished step: its result for the state, its usage, and a fatal error if any.

    `stopped` (a budget hit, see graphs/budget.py) means the step did not finish: `result` is
    empty, nothing is journaled as finished, and its turns wait in the turn journal for a resume.
    """

    result: dict[str, Any]
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    fatal: str = ""
    stopped: dict[str, Any] | None = None
    last_turn: tuple[int, dict, dict] | None = None
    """The final model reply (turn, message, usage) when a turn journal is kept: journaled with
    the step's result in one transaction (graphs/journal.py), not in a write of its own."""


REPEAT, SURPRISE = "repeat", "surprise"  # Context.unknown_outcome


@dataclass
class Durability:
    """What makes a step durable and bounded; all optional (a bare `run_step` has none)."""

    turns: StepTurns | None = None
    unknown_outcome: str = REPEAT
    spend: Spend | None = None
    deadline_seconds: float = 0
    tool_timeout_s: float = 0
    """Seconds one tool call may take (Context.tool_timeout_s); 0: no limit (a bare run_step)."""
    counted_turns: int = 0
    """Journaled model turns already in the run's usage (`State.counted_turns`): replayed, not
    counted again."""


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
    durability: Durability | None = None,
) -> StepOutcome:
    """Run `step` to a result. Never raises for model or tool trouble: it becomes the result.
    The sync face of `arun_step` (one turn loop for both); it journals the final reply itself,
    as it has no result journal to write it with."""
    outcome = run_sync(
        arun_step(
            step,
            goal=goal,
            dependencies=dependencies,
            model=model,
            model_name=model_name,
            tools=tools,
            max_tool_calls=max_tool_calls,
            run_id=run_id,
            durability=durability,
        )
    )
    if outcome.last_turn is not None and durability is not None and durability.turns:
        durability.turns.put_model_reply(*outcome.last_turn)
    return outcome


def step_tools(step: dict[str, Any], tools: list[BaseTool]) -> list[BaseTool]:
    """The tools `step` may use: its plan's allow-list, or every tool of the run without one.
    Text the executor reads (a web page, a file) cannot add a tool: the plan fixed the list
    before any of it was read."""
    allowed = step.get("tools")
    return list(tools) if allowed is None else [t for t in tools if t.name in allowed]


async def arun_step(
    step: dict[str, Any],
    *,
    goal: str,
    dependencies: dict[str, dict[str, Any]],
    model: BaseChatModel,
    model_name: str,
    tools: list[BaseTool],
    max_tool_calls: int,
    run_id: str = "",
    durability: Durability | None = None,
) -> StepOutcome:
    """Run `step` to a result (the scheduler's entry). Model turns are awaited, so cancelling
    the task stops the step at once; async-only tools (MCP) run natively, sync tools in a
    thread. Never raises for model or tool trouble: it becomes the result."""
    identity = StepIdentity(run_id, step["id"], step.get("attempt", 1))
    with running_step(identity):
        tools = step_tools(step, tools)  # only these are offered to the model, or callable
        run = _StepRun(step, tools, run_id, durability)
        messages = _step_messages(step, goal, dependencies, max_tool_calls)
        # flag_surprise first: the one schema every executor call sends opens the prompt, so
        # steps offered different tools still share that prefix (docs/performance.md).
        bound = model.bind_tools([flag_surprise, *tools])
        config = call_config("executor", step=step["id"], attempt=step.get("attempt", 1))
        usage: dict[str, dict[str, Any]] = {}
        # Each turn either ends the step or makes at least one tool call, so this bound is
        # enough; the +2 leaves room for a flag_surprise turn and the final reply.
        pending: tuple[int, dict, dict] | None = None
        for turn in range(max_tool_calls + 2):
            journaled = run.turns.model_reply(turn) if run.turns else None
            if journaled is not None:  # paid for before a crash: replay it, do not ask again
                reply = messages_from_dict([journaled["message"]])[0]
                # Counted already when a budget stopped the step after it: not a second time.
                turn_usage = journaled["usage"] if turn >= run.counted_turns else {}
                if run.spend:
                    run.spend.add_model(turn_usage)
            else:
                hit = run.stop_reason()
                if hit or run.error:
                    return run.stop(hit, usage)
                try:
                    reply = storable_message(await bound.ainvoke(messages, config=config))
                except FatalModelError as exc:
                    # Marked: `planexec resume` continues a step that failed the run this way
                    # from its journaled turns (app/runs/runner.py).
                    result = {**run.finish(FAILED, error=str(exc)), "fatal": True}
                    return StepOutcome(result, usage, fatal=str(exc))
                except Exception as exc:  # provider trouble is a result the replanner can act on
                    return StepOutcome(run.finish(FAILED, error=_describe_model_error(exc)), usage)
                turn_usage = usage_of_call("executor", reply, model_name)
                if run.turns and reply.tool_calls:
                    await asyncio.to_thread(
                        run.turns.put_model_reply, turn, message_to_dict(reply), turn_usage
                    )
                elif run.turns:  # the answer: journaled with the step's result, one write
                    pending = (turn, message_to_dict(reply), turn_usage)
                if run.spend:
                    run.spend.add_model(turn_usage)
            usage = merge_usage(usage, turn_usage)
            messages.append(reply)
            if not reply.tool_calls:
                done = run.finish(DONE, text=_text_of(reply))
                return StepOutcome(done, usage, last_turn=pending)
            for call in reply.tool_calls:
                answer = await run.acall_tool(call, max_tool_calls)
                if run.stopped:
                    return run.stop(run.stopped, usage)
                if run.error:
                    return StepOutcome(run.finish(FAILED, error=run.error), usage)
                messages.append(answer)
        return StepOutcome(
            run.finish(FAILED, error=f"no final answer after {max_tool_calls + 2} model turns"),
            usage,
        )


def _step_messages(
    step: dict[str, Any], goal: str, dependencies: dict[str, dict[str, Any]], max_tool_calls: int
) -> list[BaseMessage]:
    """The step's prompt, laid out for providers' prompt caches (they match identical leading
    tokens): what is the same on every executor call of the run first (instructions, goal),
    then the dependency results (the same bytes for sibling steps and for a step's retry),
    and the step itself last."""
    return [
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


class _StepRun:
    """Bookkeeping for one attempt of a step: tool calls made, surprise, first error."""

    def __init__(
        self,
        step: dict[str, Any],
        tools: list[BaseTool],
        run_id: str = "",
        durability: Durability | None = None,
    ):
        durability = durability or Durability()
        self.step = step
        self.identity = StepIdentity(run_id, step["id"], step.get("attempt", 1))
        self.tools = {t.name: t for t in tools}
        self.turns = durability.turns
        self.counted_turns = durability.counted_turns
        self.spend = durability.spend
        self.unknown_outcome = durability.unknown_outcome
        self.deadline_seconds = durability.deadline_seconds
        self.tool_timeout_s = durability.tool_timeout_s
        self.calls: list[dict[str, Any]] = []
        self.surprise = ""
        self.error = ""
        self.stopped: dict[str, Any] | None = None
        self.started_at = time.time()

    def stop_reason(self) -> dict[str, Any] | None:
        """Why no new model turn or tool call may start: a run budget reached, or this step's
        deadline passed (then the step fails: `error` is set and None is returned)."""
        if self.deadline_seconds and time.time() - self.started_at >= self.deadline_seconds:
            self.error = f"step deadline of {self.deadline_seconds:g} s passed"
            return None
        return self.spend.exceeded() if self.spend else None

    def stop(self, hit: dict[str, Any] | None, usage: dict) -> StepOutcome:
        if hit is None:  # the deadline: a failed step for the replanner
            return StepOutcome(self.finish(FAILED, error=self.error), usage)
        return StepOutcome({}, usage, stopped=hit)

    def call_tool(self, call: dict[str, Any], max_tool_calls: int) -> ToolMessage:
        """`acall_tool` for sync callers."""
        return run_sync(self.acall_tool(call, max_tool_calls))

    async def acall_tool(self, call: dict[str, Any], max_tool_calls: int) -> ToolMessage:
        """Make (or replay from the turn journal) one tool call. `ainvoke` runs an async tool
        natively and a sync one in a worker thread, so the event loop never blocks."""
        name, args, call_id = call["name"], call.get("args", {}), call.get("id") or ""
        if name == flag_surprise.name:
            self.surprise = (
                cut_error(str(args.get("reason", ""))) or "the executor flagged a surprise"
            )
            # .func, not .invoke(args): malformed arguments must not raise out of the step.
            return ToolMessage(
                content=flag_surprise.func(self.surprise), tool_call_id=call_id, name=name
            )
        # Times let a report draw each tool call, and the model turns between them.
        record: dict[str, Any] = {"name": name, "args": args, "ok": False}
        record["started_at"] = time.time()
        self.calls.append(record)
        index = len(self.calls) - 1
        if len(self.calls) > max_tool_calls:
            self.error = f"tool call cap reached: a step may make {max_tool_calls} tool calls"
            record["output"] = self.error
            return ToolMessage(content=self.error, tool_call_id=call_id, status="error")
        journaled = self.turns.tool_call(index) if self.turns else None
        if journaled is not None and journaled["state"] == "done":
            # Its result was journaled before a crash: the call is not made again.
            answer = messages_from_dict([journaled["message"]])[0]
            if self.spend:
                self.spend.add_replayed_call()
            return self._take(record, name, args, answer, journaled.get("error", ""))
        if journaled is not None and self.unknown_outcome == SURPRISE:
            # Started before a crash, no result: it may or may not have had its effect.
            self.surprise = self.error = (
                f"outcome unknown: tool {name} (call {index} of step {self.step['id']}) was "
                "started before the process stopped and has no recorded result; it was not "
                "repeated (Context.unknown_outcome=surprise)"
            )
            record["output"] = self.error
            return ToolMessage(content=self.error, tool_call_id=call_id, status="error")
        hit = self.stop_reason()
        if hit or self.error:
            self.stopped = hit
            return ToolMessage(content=self.error, tool_call_id=call_id, status="error")
        if self.spend:
            # Counted with the check above, no await between them: steps running beside this
            # one check the budget while this one journals, and must see this call as made.
            self.spend.add_tool_call()
        if self.turns:  # before the call: a crash now is an unknown outcome
            await asyncio.to_thread(self.turns.tool_started, index)
        error = ""
        limit, why = self._call_limit(name)
        timer: asyncio.Timeout | None = None
        try:
            # The same index, hence the same idempotency key, when a resume repeats this call.
            with calling_tool(ToolCallIdentity(self.identity, index)):
                async with asyncio.timeout(limit) as timer:
                    answer = await self._ainvoke(name, args, call_id)
        except Exception as exc:  # a raising tool is a failed step, never a crash
            if timer is not None and timer.expired():
                # A sync tool's thread cannot be stopped: it runs on, and its answer is dropped.
                # Its effect may still happen: the journal records the call as answered (an
                # error), so a resume does not send it again.
                error = exc_text = why
            else:
                exc_text = storable(str(exc))  # a file name that is not UTF-8, say
                error = cut_error(f"tool {name} failed: {exc_text}")
            answer = ToolMessage(
                content=exc_text[:OUTPUT_PREVIEW_CHARS], tool_call_id=call_id, status="error"
            )
        if self.turns:
            await asyncio.to_thread(self.turns.tool_done, index, message_to_dict(answer), error)
        return self._take(record, name, args, answer, error)

    def _take(
        self, record: dict[str, Any], name: str, args: dict, answer: ToolMessage, error: str
    ) -> ToolMessage:
        """Account for a tool's answer (made now or replayed from the journal)."""
        record["finished_at"] = time.time()
        if error:
            self.error = error
            record["output"] = str(answer.content)[:OUTPUT_PREVIEW_CHARS]
            return ToolMessage(content=error, tool_call_id=answer.tool_call_id, status="error")
        output = answer.content if isinstance(answer.content, str) else json.dumps(answer.content)
        empty = _is_empty(answer)
        record.update(ok=True, output=output[:OUTPUT_PREVIEW_CHARS], empty=empty)
        if empty and not self.surprise:
            self.surprise = f"{name} returned an empty result for {json.dumps(args)[:200]}"
        # What a tool returns is data from outside, never instructions (prompts/untrusted.py).
        return answer.model_copy(update={"content": wrap(f"result of tool {name}", output)})

    def _call_limit(self, name: str) -> tuple[float | None, str]:
        """How long the next call of tool `name` may take (None: no limit), and what to say
        when it takes longer: the tool timeout, or the step deadline if that comes first."""
        limit, why = None, ""
        if self.tool_timeout_s > 0:
            limit = self.tool_timeout_s
            why = f"tool {name} did not answer within {limit:g} s (tool_timeout_s)"
        if self.deadline_seconds:
            left = max(0.0, self.started_at + self.deadline_seconds - time.time())
            if limit is None or left < limit:
                limit = left
                why = f"step deadline of {self.deadline_seconds:g} s passed during tool {name}"
        return limit, why

    async def _ainvoke(self, name: str, args: dict[str, Any], call_id: str) -> ToolMessage:
        answer = await invoke_tool(self._tool(name), _tool_call(name, args, call_id))
        return _as_tool_message(answer, name, call_id)

    def _tool(self, name: str) -> BaseTool:
        tool_ = self.tools.get(name)
        if tool_ is None:
            allowed = ", ".join(sorted(self.tools)) or "no tools"
            raise LookupError(
                f"refused: tool {name!r} is not allowed in step {self.step['id']!r}; "
                f"the plan gave it: {allowed}"
            )
        return tool_

    def finish(self, status: str, *, text: str = "", error: str = "") -> dict[str, Any]:
        honest = {}
        if self.turns is not None:  # killed executions and repeated calls count too
            honest = {
                "executions": max(1, self.turns.executions),
                "tool_calls_made": self.turns.calls_made(),
            }
        return {
            **honest,
            "id": self.step["id"],
            "description": self.step["description"],
            "status": status,
            "result": text,
            "error": cut_error(error),
            "surprise": cut_error(self.surprise),
            "attempts": self.step.get("attempt", 1),
            "tool_calls": self.calls,
            "started_at": self.started_at,
            "finished_at": time.time(),
        }


def cut_error(text: str) -> str:
    """An error or surprise of at most MAX_ERROR_CHARS, its note included, so a text cut once
    (at the tool call) keeps its note and length when the step's result cuts it again."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    note = f" ... [cut: {len(text)} characters in all]"
    return text[: MAX_ERROR_CHARS - len(note)] + note


def _tool_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"type": "tool_call", "name": name, "args": args, "id": call_id}


def _as_tool_message(answer: Any, name: str, call_id: str) -> ToolMessage:
    """A tool's answer as a ToolMessage of at most MAX_TOOL_OUTPUT_CHARS (content and artifact
    each; a longer content is cut and says so, a longer artifact is dropped)."""
    if not isinstance(answer, ToolMessage):  # a tool that returns a Command or raw value
        answer = ToolMessage(content=str(answer), tool_call_id=call_id, name=name)
    # Kept as text that can be stored and sent (prompts/untrusted.py), from the start: a step
    # that reads this answer is keyed by it, before and after a resume alike.
    content = storable(answer.content)
    update: dict[str, Any] = {} if content is answer.content else {"content": content}
    if not isinstance(content, str):  # content blocks (MCP): text once, here, as JSON
        update["content"] = content = json.dumps(content, default=str)
    if len(content) > MAX_TOOL_OUTPUT_CHARS:
        shown = MAX_TOOL_OUTPUT_CHARS
        note = f"\n[cut: tool {name} answered {len(content)} characters; the first {shown} shown]"
        update["content"] = content[:shown] + note
    artifact = storable(answer.artifact)
    if artifact is not None and len(json.dumps(artifact, default=str)) > MAX_TOOL_OUTPUT_CHARS:
        update["artifact"] = None
    elif artifact is not answer.artifact:
        update["artifact"] = artifact
    return answer.model_copy(update=update) if update else answer


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
    # In the order they finished, not the plan's depends_on order: steps that share
    # dependencies then share the start of this block too.
    ordered = sorted(dependencies.items(), key=lambda item: item[1].get("finished_at", 0))
    for dep_id, result in ordered:
        text = str(result.get("result", ""))
        if len(text) > DEPENDENCY_CHARS:
            text = text[:DEPENDENCY_CHARS] + f" ... [cut at {DEPENDENCY_CHARS} characters]"
        block = wrap(f"result of step {dep_id}", text)
        lines.append(f"[{dep_id}] {result.get('description', '')}\n{block}")
    return "\n\n".join(lines)
