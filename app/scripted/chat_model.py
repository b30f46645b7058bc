"""A chat model that plays a scenario: real `BaseChatModel`, no network, deterministic.

It learns what it is being asked from the call's metadata (`planexec_role`, `planexec_step`,
`planexec_attempt`, `planexec_call`, set by the graph on every model call) and from the messages
(how many replies it already gave in this conversation). Token usage is counted with a real BPE
tokenizer over the messages and tool schemas it received, and cached input tokens as OpenAI
reports them: a prompt prefix already sent in the same run (thread) to the same model is cached
(app/scripted/prompt_cache.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from app.models import FatalModelError
from app.scripted.prompt_cache import PromptCache
from app.scripted.scenarios import ExecutorTurn, Scenario, load_scenario, pick_attempt
from app.scripted.streaming import (
    Delta,
    StreamDropped,
    StreamDrops,
    cut_at,
    deltas,
    total_wait,
)
from app.scripted.tokens import prompt_tokens, usage_metadata
from graphs.plan_text import MORE_STEPS, format_end_text, format_plan_text
from graphs.tool_step import params_of_description
from prompts.untrusted import unwrap

# Prompt prefixes seen per (run, model it stands for): the provider-side cache a run would hit.
RUN_PROMPT_CACHE = PromptCache()
# Streams cut so far, per run and reply (PlanReply.drop_at).
RUN_DROPS = StreamDrops()


class ScriptError(FatalModelError):
    """The scenario has no reply for what the model was asked: a scenario bug, not a model one."""


class ScriptedQuotaError(RuntimeError):
    """A scripted 429: the provider says the quota or rate limit is exhausted."""

    status_code = 429


class ScriptedServerError(RuntimeError):
    """A scripted 5xx from the provider."""

    status_code = 500


class ScriptedChatModel(BaseChatModel):
    """Plays the replies of `scenario` (a bundled name or a file path)."""

    scenario: str

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"scenario": self.scenario}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        meta = dict(run_manager.metadata) if run_manager else {}
        reply = play(self.scenario, messages, kwargs.get("tools") or [], meta)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # asyncio.sleep, not time.sleep: a cancelled run stops waiting at once. The scenario
        # file is read in a thread: nothing blocks the event loop (langgraph dev checks).
        played = await asyncio.to_thread(
            prepare, self.scenario, messages, kwargs.get("tools") or [], _meta(run_manager)
        )
        await asyncio.sleep(played.total)
        return ChatResult(generations=[ChatGeneration(message=played.result())])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        played = prepare(self.scenario, messages, kwargs.get("tools") or [], _meta(run_manager))
        for delta, chunk in played.chunks():
            time.sleep(delta.wait)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        played = await asyncio.to_thread(
            prepare, self.scenario, messages, kwargs.get("tools") or [], _meta(run_manager)
        )
        for delta, chunk in played.chunks():
            await asyncio.sleep(delta.wait)
            yield chunk


def _meta(run_manager: Any) -> dict[str, Any]:
    return dict(run_manager.metadata) if run_manager else {}


@dataclass
class Played:
    """A scripted reply before its time has passed: the reply (with usage) or the error the
    call ends with, and its timing (`Scenario.latency`, `Scenario.token_latency`)."""

    reply: AIMessage | None
    first_token: float
    per_token: float = 0.0
    error: Exception | None = None
    drop_at: float | None = None
    """The share of a streamed reply after which its connection drops, when it drops this
    time (decided when the stream starts: `drops_now`)."""
    drops_now: Callable[[], bool] | None = None

    @property
    def total(self) -> float:
        if self.reply is None:
            return self.first_token
        return total_wait(self.reply, self.first_token, self.per_token)

    def result(self) -> AIMessage:
        """The reply, or the scripted error raised."""
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply

    def cut(self, pieces: int) -> int | None:
        """Where a stream of `pieces` is cut this time (how many arrive), or None."""
        if self.drop_at is None or self.drops_now is None or not self.drops_now():
            return None
        return cut_at(pieces, self.drop_at)

    def chunks(self) -> Iterator[tuple[Delta, ChatGenerationChunk]]:
        """The reply as LangChain chunks, each with the wait before it; the last carries the
        usage. A scripted error is raised after the time to the first token."""
        if self.error is not None:
            yield Delta(wait=self.first_token), ChatGenerationChunk(message=AIMessageChunk(""))
            raise self.error
        reply = self.result()
        pieces = deltas(reply, self.first_token, self.per_token)
        cut = self.cut(len(pieces))
        for i, delta in enumerate(pieces):
            if i == cut:
                raise StreamDropped(f"scripted: the stream dropped after {i} of {len(pieces)}")
            calls = []
            if delta.call_index is not None:
                calls.append(
                    {
                        "index": delta.call_index,
                        "id": delta.call_id,
                        "name": delta.name,
                        "args": delta.args,
                        "type": "tool_call_chunk",
                    }
                )
            last = i == len(pieces) - 1
            message = AIMessageChunk(
                content=delta.content,
                tool_call_chunks=calls,
                usage_metadata=reply.usage_metadata if last else None,
                response_metadata=reply.response_metadata if last else {},
                chunk_position="last" if last else None,
            )
            yield delta, ChatGenerationChunk(message=message)


def ask_of(messages: Sequence[BaseMessage], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the model is asked: role, step, attempt and call, from the call's metadata or, when
    there is none (a request that came over HTTP), from the prompts the graph writes."""
    meta = dict(meta or {})
    if meta.get("planexec_role"):
        return meta
    system = next((str(m.content) for m in messages if m.type == "system"), "")
    task = next((str(m.content) for m in messages if m.type == "human"), "")
    for role, opening in _ROLE_OPENINGS.items():
        if system.startswith(opening):
            meta["planexec_role"] = role
    if found := _STEP_RE.search(task):
        meta.update(planexec_step=found["step"], planexec_attempt=int(found["attempt"]))
    if found := _REVIEW_RE.search(task):
        meta["planexec_call"] = int(found["review"]) - 1
    return meta


_ROLE_OPENINGS = {
    "planner": "You are the planner",
    "executor": "You are an executor",
    "replanner": "You are the replanner",
}
_STEP_RE = re.compile(r"Your step \((?P<step>[^,()]+), attempt (?P<attempt>\d+)\)")
_REVIEW_RE = re.compile(r"\(review (?P<review>\d+) of this run\)")


def play(
    scenario: str,
    messages: Sequence[BaseMessage],
    tools: Sequence[dict],
    meta: dict[str, Any] | None = None,
    prompt_cache: PromptCache | None = RUN_PROMPT_CACHE,
) -> AIMessage:
    """The scenario's reply to `messages` (after its simulated latency), with token usage."""
    played = prepare(scenario, messages, tools, meta, prompt_cache)
    time.sleep(played.total)
    return played.result()


def prepare(
    scenario: str,
    messages: Sequence[BaseMessage],
    tools: Sequence[dict],
    meta: dict[str, Any] | None = None,
    prompt_cache: PromptCache | None = RUN_PROMPT_CACHE,
    structured: bool | None = None,
    drops: StreamDrops = RUN_DROPS,
) -> Played:
    """The scenario's reply to `messages`, with token usage, and how long it takes (not waited).

    Cached input tokens come from `prompt_cache`, scoped by the run's thread id in `meta` and
    the model the role stands for; None leaves them 0 (the server keeps its own cache).
    `structured` says whether the schema was asked for (a response_format or a forced schema
    tool); None: when one of `tools` is a planexec schema. A plan not asked for as a schema is
    written as plan lines (graphs/plan_text.py), as the planner's prompt then asks. `drops`
    counts the streams a reply's `drop_at` cut, scoped like the prompt cache."""
    script = load_scenario(scenario)
    meta = ask_of(messages, meta)
    role = meta.get("planexec_role")
    if role not in ("planner", "executor", "replanner"):
        raise ScriptError(
            f"scenario {script.name!r}: cannot tell which role is asked (no planexec metadata and "
            "no planexec prompt); the scripted model only plays inside a planexec graph"
        )
    turn = sum(isinstance(m, AIMessage) for m in messages)
    per_token = script.token_latency.get(role, 0.0)
    try:
        if structured is None:
            structured = any(_tool_name(t) in _SCHEMA_TOOLS for t in tools)
        reply, latency = _reply(
            script, role, meta, turn, list(tools), list(messages), structured=structured
        )
    except _ScriptedFailure as failure:
        return Played(None, failure.latency, error=failure.error)
    prompt = prompt_tokens(messages, tools)
    stands_for = script.stands_for.get(role, "")
    cached = 0
    if prompt_cache is not None:
        cached = prompt_cache.cached_tokens((str(meta.get("thread_id", "")), stands_for), prompt)
    reply.usage_metadata = usage_metadata(messages, tools, reply, cached, prompt)
    reply.response_metadata = {
        "model_name": stands_for,
        "scenario": script.name,
    }
    played = Played(reply, latency, per_token)
    planned = pick_attempt(script.planner, turn) if role == "planner" else None
    if planned is not None and planned.drop_at is not None:
        key = (str(meta.get("thread_id", "")), script.name, "planner", str(turn))
        played.drop_at = planned.drop_at
        played.drops_now = partial(drops.take, key, planned.drops)
    return played


_SCHEMA_TOOLS = {"Plan", "ReplanDecision"}  # graphs/schemas.py's titles, as the model sees them


def _last_tool_result(messages: Sequence[BaseMessage]) -> str:
    """The text of the last real tool's output (flag_surprise's acknowledgement is not a
    result), without its data block."""
    last = next(
        (m for m in reversed(messages) if isinstance(m, ToolMessage) and m.name != "flag_surprise"),
        None,
    )
    return unwrap(str(last.content)) if last else ""


def _filled(value: Any, result: str) -> Any:
    """`value` with '{last_tool_result}' replaced in every string (a planner that looked)."""
    if isinstance(value, str):
        return value.replace("{last_tool_result}", result)
    if isinstance(value, dict):
        return {k: _filled(v, result) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, result) for v in value]
    return value


def _asks_text_end(messages: Sequence[BaseMessage]) -> bool:
    """The end-of-run call asking for a text decision (prompts/replanner_end_lines.txt)."""
    return MORE_STEPS in _system_text(messages)


def _system_text(messages: Sequence[BaseMessage]) -> str:
    return next((str(m.content) for m in messages if m.type == "system"), "")


def _tool_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name", ""))


class _ScriptedFailure(Exception):
    """A scripted model error and the time the call takes before it (internal)."""

    def __init__(self, error: Exception, latency: float) -> None:
        self.error, self.latency = error, latency


def _reply(
    script: Scenario,
    role: str,
    meta: dict[str, Any],
    turn: int,
    tools: list[dict],
    messages: list[BaseMessage],
    *,
    structured: bool,
) -> tuple[AIMessage, float]:
    default_latency = script.latency.get(role, 0.0)
    if role == "executor":
        return _executor_reply(script, meta, turn, messages, default_latency)
    if role == "planner":
        entry: Any = script.planner
        where = "planner"
    else:
        call = int(meta.get("planexec_call", 0))
        where = f"replanner call {call + 1}"
        entry = script.replanner[call] if call < len(script.replanner) else None
    reply = pick_attempt(entry, turn) if entry is not None else None
    if reply is None:
        raise ScriptError(
            f"scenario {script.name!r} has no reply for the {where}, attempt {turn + 1}; "
            "add one to the scenario file"
        )
    latency = reply.latency if reply.latency is not None else default_latency
    if reply.raw is not None:
        return AIMessage(content=reply.raw), latency
    if role == "planner" and reply.tool_calls:  # look-ups before the plan
        calls = [
            {"name": c.name, "args": c.args, "id": f"call_planner_{turn}_{i}"}
            for i, c in enumerate(reply.tool_calls)
        ]
        return AIMessage(content="", tool_calls=calls), latency
    args = reply.model_dump(exclude={"raw", "latency", "tool_calls"}, exclude_none=True)
    if "{last_tool_result}" in json.dumps(args):
        args = _filled(args, _last_tool_result(messages))
    if not structured:  # asked for text: plan lines, or the end-of-run decision as text
        if role == "planner":
            # Positional arguments in the order the prompt's tool list shows, as a model would.
            params = params_of_description(_system_text(messages))
            return AIMessage(content=format_plan_text(args.get("steps") or [], params)), latency
        if _asks_text_end(messages):
            return AIMessage(content=format_end_text(args)), latency
    if not tools:  # structured output asked as a JSON response (response_format), not a tool
        return AIMessage(content=json.dumps(args)), latency
    name = tools[0]["function"]["name"]
    call_id = f"call_{role}_{meta.get('planexec_call', 0)}_{turn}"
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}]), (
        latency
    )


def _executor_reply(
    script: Scenario,
    meta: dict[str, Any],
    turn: int,
    messages: list[BaseMessage],
    default_latency: float,
) -> tuple[AIMessage, float]:
    step = str(meta.get("planexec_step", ""))
    attempt = int(meta.get("planexec_attempt", 1))
    key = f"{step}#{attempt}" if attempt > 1 else step
    turns = script.executor.get(key)
    if turns is None or turn >= len(turns):
        raise ScriptError(
            f"scenario {script.name!r} has no executor turn {turn + 1} for step {key!r}; "
            f"add it under executor.{key} in the scenario file"
        )
    spec: ExecutorTurn = turns[turn]
    latency = spec.latency if spec.latency is not None else default_latency
    if spec.error == "quota":
        raise _ScriptedFailure(ScriptedQuotaError(spec.message or "quota exceeded (429)"), latency)
    if spec.error == "server":
        raise _ScriptedFailure(ScriptedServerError(spec.message or "server error (500)"), latency)
    content = spec.content or ""
    if "{last_tool_result}" in content:
        content = content.replace("{last_tool_result}", _last_tool_result(messages))
    calls = [
        {"name": c.name, "args": c.args, "id": f"call_{key}_{turn}_{i}"}
        for i, c in enumerate(spec.tool_calls)
    ]
    return AIMessage(content=content, tool_calls=calls), latency
