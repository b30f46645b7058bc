"""A local OpenAI-compatible HTTP server that plays a scenario.

`planexec` (or any OpenAI client) pointed at it with `OPENAI_BASE_URL` talks to it exactly as it
would talk to Ollama, vLLM or a llama.cpp server: the real `openai` / `langchain-openai` client,
real HTTP, real retries. The replies come from the scenario (`app.scripted.play`), which works out
the role, step, attempt and review from the planexec prompts in the request, and the usage is
counted with the same tokenizer as the scripted model (`app.scripted.tokens`). Cached prompt
tokens are reported as OpenAI does (`usage.prompt_tokens_details.cached_tokens`): a prompt prefix
this server was already sent for the same model counts as cached (app/scripted/prompt_cache.py).

    python -m app.scripted.server demo --port 8000        # or: planexec serve-scenario demo
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 planexec run "..." --planner-model openai:gpt-4o ...

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (messages with tool calls, `tools` and
`tool_choice`, `response_format` json_schema / json_object, streaming or not), and for tests
`GET /_planexec/usage` (the usage of every reply, summed per role) and `POST /_planexec/reset`.

`ServerFaults` makes the endpoint misbehave on purpose (429s, 503s, one reply that breaks the
schema) so tests can prove a run survives what real endpoints do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.scripted.chat_model import (
    Played,
    ScriptedQuotaError,
    ScriptedServerError,
    ScriptError,
    ask_of,
    prepare,
)
from app.scripted.prompt_cache import PromptCache
from app.scripted.scenarios import load_scenario
from app.scripted.streaming import StreamDropped, StreamDrops, deltas
from app.scripted.tokens import prompt_tokens, usage_metadata

# The reply "bad JSON" mode sends: valid JSON that matches neither Plan nor ReplanDecision.
BAD_JSON_ARGS: dict[str, Any] = {"steps": "oops"}
BAD_JSON = json.dumps(BAD_JSON_ARGS)
# A request body is read up to this size and within this time: anything that can reach the
# port is a caller, and a body no prompt needs, or one sent a byte at a time, must not hold
# the server's memory or a connection. Far above any prompt a scenario plays.
MAX_BODY_BYTES = 8 * 1024 * 1024
BODY_TIMEOUT_S = 30.0
# Connections (and requests in flight) served at once; uvicorn answers 503 beyond. Each may
# hold a body of up to MAX_BODY_BYTES: without a cap, 40 callers stalling near the cap held
# 300 MB.
MAX_CONNECTIONS = 64  # a run steps 16 at a time by default; four such runs at once
_BAD_CALL_PREFIX = "call_bad_json_"


@dataclass
class ServerFaults:
    """Misbehaviour to inject, counted over `POST /v1/chat/completions` requests.

    The first `fail_first_429` requests get a 429 (rate limit), the next `fail_first_503` a 503;
    with `bad_json_first`, the first structured request (a `response_format`, or a `tool_choice`
    naming one function) that gets through is answered with JSON that does not match its schema.
    Error responses carry `retry-after-ms: retry_after_ms`, which the OpenAI client honours.
    """

    fail_first_429: int = 0
    fail_first_503: int = 0
    bad_json_first: bool = False
    retry_after_ms: int = 20


@dataclass
class _Ledger:
    """What the server did: request count, faults used, usage per role. Thread-safe."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    bad_json_sent: bool = False
    statuses: dict[int, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    # Prompt prefixes sent so far, per model asked for: what OpenAI's prompt cache would hold.
    prompt_cache: PromptCache = field(default_factory=PromptCache)
    drops: StreamDrops = field(default_factory=StreamDrops)

    def next_request(self) -> int:
        with self.lock:
            self.requests += 1
            return self.requests

    def take_bad_json(self) -> bool:
        with self.lock:
            if self.bad_json_sent:
                return False
            self.bad_json_sent = True
            return True

    def record(
        self,
        status: int,
        role: str = "",
        usage: dict[str, Any] | None = None,
        kind: str = "",
    ) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if usage is None:
                return
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            totals = self.usage.setdefault(
                role or "unknown",
                {
                    "calls": 0,
                    "prompt_tokens": 0,
                    "cached_tokens": 0,
                    "completion_tokens": 0,
                    "total_tokens": 0,
                },
            )
            totals["calls"] += 1
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                totals[key] += usage[key]
            totals["cached_tokens"] += usage["prompt_tokens_details"]["cached_tokens"]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "kinds": dict(sorted(self.kinds.items())),
                "usage": {role: dict(t) for role, t in sorted(self.usage.items())},
            }

    def reset(self) -> None:
        with self.lock:
            self.requests, self.bad_json_sent = 0, False
            self.statuses.clear()
            self.kinds.clear()
            self.usage.clear()
            self.prompt_cache.clear()
            self.drops.clear()


class RequestError(ValueError):
    """A request the server cannot serve: answered 400 invalid_request_error."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


async def _body(request: Request) -> bytes | None:
    """The request's body, or None when it is over MAX_BODY_BYTES (said in advance by its
    Content-Length, or found while reading a chunked one: nothing past the cap is kept)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(scenario: str, *, faults: ServerFaults | None = None) -> Starlette:
    """An ASGI app serving `scenario` (a bundled name or a file) as an OpenAI-compatible API.

    Raises `app.scripted.scenarios.ScenarioError` at once if the scenario cannot be loaded."""
    script = load_scenario(scenario)
    faults = faults or ServerFaults()
    ledger = _Ledger()

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [_model(m) for m in model_ids(scenario)]})

    async def model(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name not in model_ids(scenario):
            return _error(
                404,
                f"The model {name!r} does not exist",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        return JSONResponse(_model(name))

    async def chat_completions(request: Request) -> Response:
        number = ledger.next_request()
        if number <= faults.fail_first_429:
            ledger.record(429)
            return _error(
                429,
                f"Rate limit reached (injected fault: request {number} of the first "
                f"{faults.fail_first_429} gets a 429)",
                "rate_limit_exceeded",
                code="rate_limit_exceeded",
                retry_after_ms=faults.retry_after_ms,
            )
        if number <= faults.fail_first_429 + faults.fail_first_503:
            ledger.record(503)
            return _error(
                503,
                f"The server is overloaded (injected fault: request {number} gets a 503)",
                "server_error",
                code="service_unavailable",
                retry_after_ms=faults.retry_after_ms,
            )
        try:
            raw = await asyncio.wait_for(_body(request), BODY_TIMEOUT_S)
        except TimeoutError:
            ledger.record(408)
            return _error(
                408, f"The request body took over {BODY_TIMEOUT_S:g} s to arrive", "timeout"
            )
        if raw is None:
            ledger.record(413)
            return _error(
                413,
                f"The request body is over {MAX_BODY_BYTES} bytes; send a shorter prompt",
                "invalid_request_error",
            )
        try:
            body = json.loads(raw)
        except RecursionError:
            ledger.record(400)
            return _error(400, "The request body nests too deeply", "invalid_request_error")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            ledger.record(400)
            return _error(
                400, f"The request body is not valid JSON: {exc}", "invalid_request_error"
            )
        try:
            call = parse_request(body)
        except RequestError as exc:
            ledger.record(400)
            return _error(400, str(exc), "invalid_request_error", param=exc.param)
        bad = faults.bad_json_first and call.structured and ledger.take_bad_json()
        try:
            played = (
                bad_json_reply(call, ledger.prompt_cache)
                if bad
                else await run_in_threadpool(
                    reply_to, scenario, call, ledger.prompt_cache, ledger.drops
                )
            )
            if played.error is not None or not call.stream:
                # asyncio.sleep: a client that hangs up or a server shutting down stops waiting.
                await asyncio.sleep(played.total)
            reply = played.result()
        except ScriptError as exc:
            ledger.record(400)
            where = _where(script.name, call)
            return _error(
                400,
                f"{exc} ({_describe(where)})",
                "invalid_request_error",
                code="scenario_has_no_reply",
                extra=where,
            )
        except ScriptedQuotaError as exc:
            ledger.record(429)
            kind = "insufficient_quota" if "quota" in str(exc).lower() else "rate_limit_exceeded"
            return _error(
                429,
                str(exc),
                kind,
                code=kind,
                retry_after_ms=faults.retry_after_ms,
                extra=_where(script.name, call),
            )
        except ScriptedServerError as exc:
            ledger.record(500)
            return _error(
                500,
                str(exc),
                "server_error",
                retry_after_ms=faults.retry_after_ms,
                extra=_where(script.name, call),
            )
        except Exception as exc:  # a bug here, or the scenario file gone: still an API error
            ledger.record(500)
            return _error(500, f"{type(exc).__name__}: {exc}", "server_error")
        usage = usage_of(reply)
        ledger.record(200, call.role, usage, call.kind)
        if call.stream:
            # Each chunk is sent when the simulated model has 'generated' it (time to the first
            # token, then its share of the per-token time), as a real endpoint streams.
            chunks = list(stream_chunks(reply, call.model, usage, call.include_usage))
            # A reply scripted to drop (drop_at) ends mid-stream, without `[DONE]`: the
            # connection is closed as a provider's would be when it fails.
            cut = played.cut(len(chunks))
            return StreamingResponse(
                _sse(chunks, played.first_token, played.total - played.first_token, cut),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(completion(reply, call.model, usage))

    async def usage(_: Request) -> JSONResponse:
        return JSONResponse({"scenario": script.name, **ledger.snapshot()})

    async def reset(_: Request) -> JSONResponse:
        ledger.reset()
        return JSONResponse({"scenario": script.name, **ledger.snapshot()})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "planexec_scenario": script.name,
                "base_url": str(request.base_url).rstrip("/") + "/v1",
                "faults": asdict(faults),
                "endpoints": [
                    "GET /v1/models",
                    "POST /v1/chat/completions",
                    "GET /_planexec/usage",
                    "POST /_planexec/reset",
                ],
            }
        )

    app = Starlette(
        routes=[
            Route("/", info),
            Route("/v1/models", models),
            Route("/v1/models/{name:path}", model),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/chat/completions", chat_completions, methods=["POST"]),
            Route("/_planexec/usage", usage),
            Route("/_planexec/reset", reset, methods=["POST"]),
        ]
    )
    app.state.scenario = script.name
    app.state.faults = faults
    app.state.ledger = ledger
    return app


def model_ids(scenario: str) -> list[str]:
    """The model names the server lists: what each role stands for (without the provider
    prefix), and 'scripted'. Any other name is answered too."""
    names = {spec.partition(":")[2] or spec for spec in load_scenario(scenario).stands_for.values()}
    return [*sorted(names), "scripted"]


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "planexec-scenario"}


# requests ---------------------------------------------------------------------------------------


@dataclass
class ChatCall:
    """One chat completions request, in LangChain terms."""

    model: str
    messages: list[BaseMessage]
    tools: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    structured: bool = False  # a response_format, or a tool_choice naming one function
    forced_tool: str = ""
    response_format: str = ""  # "json_schema", "json_object" or ""

    @property
    def kind(self) -> str:
        """How the reply is asked for: json_schema, json_object, function_calling (a tool_choice
        naming one function), tools, or plain."""
        if self.response_format:
            return self.response_format
        if self.forced_tool:
            return "function_calling"
        return "tools" if self.tools else "plain"

    @property
    def role(self) -> str:
        return str(ask_of(self.messages).get("planexec_role") or "unknown")


def parse_request(body: Any) -> ChatCall:
    """Validate a chat completions body and convert its messages to LangChain messages."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", param="model")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(_is_function_tool(t) for t in tools):
        raise RequestError(
            "'tools' must be an array of {'type': 'function', 'function': {'name': ...}}",
            param="tools",
        )
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise RequestError("'stream_options' must be an object", param="stream_options")
    call = ChatCall(
        model=model,
        messages=to_langchain(raw_messages),
        tools=list(tools),
        stream=bool(body.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
    )
    call.forced_tool = _forced_tool(body.get("tool_choice"), tools)
    fmt = body.get("response_format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in (None, "text", "json_schema", "json_object"):
        raise RequestError(f"response_format type {kind!r} is not supported", "response_format")
    if kind == "json_schema" and not isinstance(fmt.get("json_schema"), dict):
        raise RequestError(
            "response_format json_schema needs a 'json_schema' object", "response_format"
        )
    call.response_format = kind if kind in ("json_schema", "json_object") else ""
    call.structured = bool(call.response_format or call.forced_tool)
    if call.forced_tool:
        # The scenario's structured reply calls the first tool: put the forced one first.
        call.tools.sort(key=lambda t: t["function"]["name"] != call.forced_tool)
    return call


def _is_function_tool(tool: Any) -> bool:
    return (
        isinstance(tool, dict)
        and tool.get("type", "function") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    )


def _forced_tool(choice: Any, tools: list[dict[str, Any]]) -> str:
    """The function a `tool_choice` forces, or ''. Naming an unknown function is an error."""
    if choice in (None, "auto", "none", "required"):
        return ""
    name = ""
    if isinstance(choice, dict):
        function = choice.get("function")
        name = str(function.get("name") or "") if isinstance(function, dict) else ""
    elif isinstance(choice, str):  # a bare function name, as some clients send
        name = choice
    names = [t["function"]["name"] for t in tools]
    if not name or name not in names:
        raise RequestError(
            f"tool_choice names function {name!r}, which is not among the tools ({names})",
            param="tool_choice",
        )
    return name


def to_langchain(messages: Sequence[Any]) -> list[BaseMessage]:
    """OpenAI chat messages as LangChain messages. A tool message gets its `name` from the
    assistant tool call it answers (the scripted model tells flag_surprise's answers by name)."""
    out: list[BaseMessage] = []
    names: dict[str, str] = {}
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] is not an object", param=f"messages[{i}]")
        role, content = m.get("role"), _text(m.get("content"), i)
        if role in ("system", "developer"):
            out.append(SystemMessage(content))
        elif role == "user":
            out.append(HumanMessage(content))
        elif role == "assistant":
            calls = []
            raw_calls = m.get("tool_calls") or []
            if not isinstance(raw_calls, list):
                raise RequestError(
                    f"messages[{i}].tool_calls must be an array", param=f"messages[{i}].tool_calls"
                )
            for j, tc in enumerate(raw_calls):
                where = f"messages[{i}].tool_calls[{j}]"
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("arguments") or "{}", str):
                    raise RequestError(
                        f"{where} must be an object with a 'function' object whose 'arguments' "
                        "is a JSON string",
                        param=where,
                    )
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError as exc:
                    raise RequestError(
                        f"{where}.function.arguments is not JSON: {exc}", param=where
                    ) from exc
                if not isinstance(args, dict):
                    raise RequestError(
                        f"{where}.function.arguments must encode a JSON object", param=where
                    )
                call_id = str(tc.get("id") or f"call_{i}_{j}")
                names[call_id] = str(fn.get("name") or "")
                calls.append({"name": names[call_id], "args": args, "id": call_id})
            out.append(AIMessage(content=content, tool_calls=calls))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in names:
                raise RequestError(
                    f"messages[{i}] (role 'tool') must answer a tool call of an earlier "
                    f"assistant message; tool_call_id {call_id!r} is not one",
                    param=f"messages[{i}].tool_call_id",
                )
            out.append(ToolMessage(content=content, tool_call_id=call_id, name=names[call_id]))
        else:
            raise RequestError(
                f"messages[{i}] has role {role!r}; expected system, developer, user, assistant "
                "or tool",
                param=f"messages[{i}].role",
            )
    return out


def _text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise RequestError(
        f"messages[{index}].content must be a string or an array of parts",
        param=f"messages[{index}].content",
    )


# replies ----------------------------------------------------------------------------------------


def reply_to(
    scenario: str,
    call: ChatCall,
    prompt_cache: PromptCache | None = None,
    drops: StreamDrops | None = None,
) -> Played:
    """The scenario's reply to `call` and its timing (not waited for). `drops` counts the
    streams this server cut (a reply's `drop_at`).

    Replies this server injected (bad JSON) are hidden from the scenario, which does not know
    about them, but are counted in the prompt tokens like every other message."""
    seen = [m for m in call.messages if not _injected(m)]
    played = prepare(
        scenario,
        seen,
        play_tools(call),
        meta=None,
        prompt_cache=None,
        structured=call.structured,
        drops=drops if drops is not None else StreamDrops(),
    )
    if played.reply is not None:
        _count_usage(played.reply, call, prompt_cache)
    return played


def _count_usage(reply: AIMessage, call: ChatCall, prompt_cache: PromptCache | None) -> None:
    """Set `reply`'s usage to that of the whole request as sent, with the prompt tokens
    `prompt_cache` held for `call.model` as cached (and now holds)."""
    tools = play_tools(call)
    prompt = prompt_tokens(call.messages, tools)
    cached = prompt_cache.cached_tokens(call.model, prompt) if prompt_cache is not None else 0
    reply.usage_metadata = usage_metadata(call.messages, tools, reply, cached, prompt)


def play_tools(call: ChatCall) -> list[dict[str, Any]]:
    """The tools the scenario is played (and the prompt counted) with: none when a
    response_format asks for the structured reply as content."""
    return call.tools if not call.response_format or call.forced_tool else []


def bad_json_reply(call: ChatCall, prompt_cache: PromptCache | None = None) -> Played:
    """A structured reply that parses as JSON but matches no planexec schema."""
    if call.forced_tool and not call.response_format:
        reply = AIMessage(
            content="",
            tool_calls=[
                {
                    "name": call.forced_tool,
                    "args": dict(BAD_JSON_ARGS),
                    "id": _BAD_CALL_PREFIX + secrets.token_hex(4),
                }
            ],
        )
    else:
        reply = AIMessage(content=BAD_JSON)
    _count_usage(reply, call, prompt_cache)
    return Played(reply, 0.0)


def _injected(message: BaseMessage) -> bool:
    if isinstance(message, AIMessage):
        if message.tool_calls:
            return all(
                str(c.get("id", "")).startswith(_BAD_CALL_PREFIX) for c in message.tool_calls
            )
        return message.content == BAD_JSON
    if isinstance(message, ToolMessage):
        return message.tool_call_id.startswith(_BAD_CALL_PREFIX)
    return False


def usage_of(reply: AIMessage) -> dict[str, Any]:
    """The OpenAI `usage` object for `reply`, cached prompt tokens included."""
    meta = reply.usage_metadata or {}
    prompt, completion_tokens = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
    cached = int((meta.get("input_token_details") or {}).get("cache_read", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _openai_tool_calls(reply: AIMessage) -> list[dict[str, Any]]:
    return [
        {
            "id": c.get("id") or f"call_{secrets.token_hex(6)}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c.get("args", {}))},
        }
        for c in reply.tool_calls
    ]


def _content(reply: AIMessage) -> str:
    if isinstance(reply.content, str):
        return reply.content
    return "".join(b.get("text", "") for b in reply.content if isinstance(b, dict))


def completion(reply: AIMessage, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` object for `reply`."""
    calls = _openai_tool_calls(reply)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": _content(reply) or (None if calls else ""),
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "planexec-scenario",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": usage,
    }


def stream_chunks(
    reply: AIMessage, model: str, usage: dict[str, Any], include_usage: bool
) -> Iterator[dict[str, Any]]:
    """`chat.completion.chunk` objects for `reply`: role, content pieces, tool call deltas (the
    first with id and name, then argument pieces), the finish reason, and usage if asked."""
    base = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "planexec-scenario",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        out = {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            out["usage"] = None
        return out

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for delta in deltas(reply, 0.0, 0.0):
        if delta.call_index is None:
            if delta.content:
                yield chunk({"content": delta.content})
            continue
        call: dict[str, Any] = {"index": delta.call_index}
        if delta.name is not None:
            call.update(id=delta.call_id, type="function")
            call["function"] = {"name": delta.name, "arguments": ""}
        else:
            call["function"] = {"arguments": delta.args}
        yield chunk({"tool_calls": [call]})
    finish = "tool_calls" if reply.tool_calls else "stop"
    yield chunk({}, finish)
    if include_usage:
        yield {**base, "choices": [], "usage": usage}


async def _sse(
    chunks: Iterable[dict[str, Any]],
    first_token: float,
    generation: float,
    cut: int | None = None,
) -> Any:
    """Server-sent events, each chunk after its simulated generation time: `first_token` before
    the first, then `generation` seconds split over the chunks by their share of the text (so
    the whole stream takes exactly as long as the unstreamed reply). With `cut`, the stream
    breaks off after that many chunks, each on its whole reply's schedule (uvicorn closes the
    connection mid-response)."""
    items = list(chunks)
    sizes = [len(_delta_text(i)) for i in items]
    total = sum(sizes) or 1
    for n, (item, size) in enumerate(zip(items, sizes, strict=True)):
        if n == cut:
            raise StreamDropped(f"scripted: the stream dropped after {cut} chunks")
        wait = (first_token if n == 0 else 0.0) + generation * size / total
        if wait > 0:
            await asyncio.sleep(wait)
        yield f"data: {json.dumps(item)}\n\n"
    yield "data: [DONE]\n\n"


def _delta_text(item: dict[str, Any]) -> str:
    delta = (item.get("choices") or [{}])[0].get("delta") or {}
    args = "".join(
        (c.get("function") or {}).get("arguments", "") for c in delta.get("tool_calls") or []
    )
    return (delta.get("content") or "") + args


# errors -----------------------------------------------------------------------------------------


def _where(scenario_name: str, call: ChatCall) -> dict[str, Any]:
    meta = ask_of(call.messages)
    where: dict[str, Any] = {"scenario": scenario_name, "role": meta.get("planexec_role")}
    if meta.get("planexec_step"):
        where["step"] = meta["planexec_step"]
        where["attempt"] = meta.get("planexec_attempt", 1)
    if meta.get("planexec_role") == "replanner":
        where["review"] = int(meta.get("planexec_call", 0)) + 1
    return where


def _describe(where: dict[str, Any]) -> str:
    parts = [f"scenario {where['scenario']!r}", f"role {where.get('role') or 'unknown'}"]
    if "step" in where:
        parts.append(f"step {where['step']!r} attempt {where['attempt']}")
    if "review" in where:
        parts.append(f"review {where['review']}")
    return ", ".join(parts)


def _error(
    status: int,
    message: str,
    kind: str,
    *,
    code: str | None = None,
    param: str | None = None,
    retry_after_ms: int | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """An OpenAI-style error response: {"error": {"message", "type", "param", "code"}}."""
    error: dict[str, Any] = {"message": message, "type": kind, "param": param, "code": code}
    if extra:
        error["planexec"] = extra
    headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


# running it -------------------------------------------------------------------------------------


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening-ready socket on host:port (port 0: any free port). OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def banner(scenario: str, url: str, faults: ServerFaults | None = None) -> str:
    """What `serve` prints: the base URL (first line, `OPENAI_BASE_URL=...`) and how to use it."""
    script = load_scenario(scenario)
    roles = script.stands_for
    run = (
        'planexec run "any goal"'
        f" --planner-model {roles.get('planner', 'openai:gpt-4o')}"
        f" --executor-model {roles.get('executor', 'openai:gpt-4o-mini')}"
        f" --replanner-model {roles.get('replanner', 'openai:gpt-4o')}"
    )
    if script.tools:
        run += f" --tools {','.join(script.tools)}"
    demo = script.name == "demo"
    if demo:  # where `planexec demo` keeps its workspace, as docs/openai-endpoint.md runs it
        run += " --workspace .planexec/demo"
    if "sql_query" in script.tools:
        run += " --sql-database " + (".planexec/demo-shop.sqlite" if demo else "YOUR.sqlite")
    lines = [
        f"OPENAI_BASE_URL={url}",
        f"planexec: serving scenario {script.name!r} as an OpenAI-compatible API at {url}",
        f"  models: {', '.join(model_ids(scenario))} (any name is answered)",
    ]
    active = {k: v for k, v in asdict(faults or ServerFaults()).items() if k != "retry_after_ms"}
    if any(active.values()):
        lines.append("  faults: " + ", ".join(f"{k}={v}" for k, v in active.items() if v))
    lines += [
        "In another shell:",
        f"  export OPENAI_BASE_URL={url}",
        f"  {run}",
    ]
    if script.name == "demo":
        lines.append("  (`planexec demo` once creates .planexec/demo-shop.sqlite)")
    lines.append("Stop the server with Ctrl-C.")
    return "\n".join(lines)


def serve(
    scenario: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    faults: ServerFaults | None = None,
    log_level: str = "warning",
) -> None:
    """Serve `scenario` with uvicorn until interrupted; prints the base URL to use first."""
    import uvicorn

    app = create_app(scenario, faults=faults)
    sock = bind(host, port)
    print(banner(scenario, base_url(host, sock.getsockname()[1]), faults), flush=True)
    uvicorn.Server(_config(app, log_level, grace_s=2)).run(sockets=[sock])


def _config(app: Starlette, log_level: str, *, grace_s: float) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=grace_s,
        limit_concurrency=MAX_CONNECTIONS,
    )


@dataclass
class RunningServer:
    """A server started by `serving`: its app (with `.state.ledger`) and base URL."""

    app: Starlette
    base_url: str
    port: int

    def usage(self) -> dict[str, Any]:
        return self.app.state.ledger.snapshot()


@contextmanager
def serving(
    scenario: str,
    *,
    faults: ServerFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
) -> Iterator[RunningServer]:
    """Run the server with uvicorn in a background thread (port 0: a free one) for a `with`
    block; for tests and notebooks."""
    import uvicorn

    app = create_app(scenario, faults=faults)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, "warning", grace_s=1))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"openai-server-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the scenario server on {host}:{port} did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(app=app, base_url=base_url(host, port), port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.scripted.server",
        description="Serve a planexec scenario as an OpenAI-compatible API.",
    )
    parser.add_argument("scenario", help="bundled scenario name (demo) or a scenario file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--fail-first-429", type=int, default=0, metavar="N")
    parser.add_argument("--fail-first-503", type=int, default=0, metavar="N")
    parser.add_argument("--bad-json-first", action="store_true")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    from app.scripted.scenarios import ScenarioError

    faults = ServerFaults(
        fail_first_429=args.fail_first_429,
        fail_first_503=args.fail_first_503,
        bad_json_first=args.bad_json_first,
    )
    try:
        serve(args.scenario, args.host, args.port, faults=faults, log_level=args.log_level)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
