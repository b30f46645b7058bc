"""A chat model that plays a scenario: real `BaseChatModel`, no network, deterministic.

It learns what it is being asked from the call's metadata (`planexec_role`, `planexec_step`,
`planexec_attempt`, `planexec_call`, set by the graph on every model call) and from the messages
(how many replies it already gave in this conversation). Token usage is counted with a real BPE
tokenizer over the messages and tool schemas it received, and cached input tokens as OpenAI
reports them: a prompt prefix already sent in the same run (thread) to the same model is cached
(app/scripted/prompt_cache.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from app.models import FatalModelError
from app.scripted.prompt_cache import PromptCache
from app.scripted.scenarios import ExecutorTurn, Scenario, load_scenario, pick_attempt
from app.scripted.tokens import prompt_tokens, usage_metadata

# Prompt prefixes seen per (run, model it stands for): the provider-side cache a run would hit.
RUN_PROMPT_CACHE = PromptCache()


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
    """The scenario's reply to `messages` (after its simulated latency), with token usage.

    Cached input tokens come from `prompt_cache`, scoped by the run's thread id in `meta` and
    the model the role stands for; None leaves them 0 (the server keeps its own cache)."""
    script = load_scenario(scenario)
    meta = ask_of(messages, meta)
    role = meta.get("planexec_role")
    if role not in ("planner", "executor", "replanner"):
        raise ScriptError(
            f"scenario {script.name!r}: cannot tell which role is asked (no planexec metadata and "
            "no planexec prompt); the scripted model only plays inside a planexec graph"
        )
    turn = sum(isinstance(m, AIMessage) for m in messages)
    reply, latency = _reply(script, role, meta, turn, list(tools), list(messages))
    if latency:
        time.sleep(latency)
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
    return reply


def _reply(
    script: Scenario,
    role: str,
    meta: dict[str, Any],
    turn: int,
    tools: list[dict],
    messages: list[BaseMessage],
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
    args = reply.model_dump(exclude={"raw", "latency"}, exclude_none=True)
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
        time.sleep(latency)
        raise ScriptedQuotaError(spec.message or "quota exceeded (429)")
    if spec.error == "server":
        time.sleep(latency)
        raise ScriptedServerError(spec.message or "server error (500)")
    content = spec.content or ""
    if "{last_tool_result}" in content:
        # The last real tool's output: flag_surprise's acknowledgement is not a result.
        last = next(
            (
                m
                for m in reversed(messages)
                if isinstance(m, ToolMessage) and m.name != "flag_surprise"
            ),
            None,
        )
        content = content.replace("{last_tool_result}", str(last.content) if last else "")
    calls = [
        {"name": c.name, "args": c.args, "id": f"call_{key}_{turn}_{i}"}
        for i, c in enumerate(spec.tool_calls)
    ]
    return AIMessage(content=content, tool_calls=calls), latency
