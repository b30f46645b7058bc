"""Token counts from a real BPE tokenizer that works offline (o200k_base, as GPT-4o uses).

The scripted model and the local OpenAI-compatible server count with this, over the messages and
tool schemas they actually received, so cost figures are those of the prompts the graph builds.
The framing constants follow OpenAI's published chat-format accounting. A request is also a
token sequence (`prompt_tokens`), whose prefixes the prompt cache (app/scripted/prompt_cache.py)
matches on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import bpe_openai
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage


@lru_cache(maxsize=1)
def _encoding() -> Any:
    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    """Tokens in a piece of text."""
    return len(_encode(text))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    # Content blocks: count their text parts and the JSON of anything else.
    parts = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            parts.append(json.dumps(block, sort_keys=True, default=str))
    return "".join(parts)


def _tool_calls_text(message: BaseMessage) -> str:
    calls = getattr(message, "tool_calls", None) or []
    return "".join(
        c["name"] + json.dumps(c.get("args", {}), sort_keys=True, default=str) for c in calls
    )


# Stand-ins for the chat format's special tokens (the encoder yields only non-negative ids), so a
# prompt's token sequence has the length OpenAI bills for: 3 tokens framing each message
# (<|start|>role<|message|> ... <|end|>) and 3 priming the reply.
_START, _SEPARATOR, _END = -1, -2, -3
_REPLY_PRIMER = [_START, -4, _SEPARATOR]  # <|start|>assistant<|message|>


def prompt_tokens(
    messages: Sequence[BaseMessage], tools: Sequence[dict] | None = None
) -> list[int]:
    """A chat request as one token sequence, in the order a provider reads it: the tool schemas
    (which OpenAI renders into the system prompt), then every message with its tool calls, then
    the reply primer. Its prefixes are what prompt caching matches on."""
    out: list[int] = []
    if tools:
        out += _encode(json.dumps(list(tools), sort_keys=True, default=str))
    for m in messages:
        out += [_START, *_encode(m.type), _SEPARATOR]
        out += _encode(_content_text(m.content)) + _encode(_tool_calls_text(m))
        if isinstance(m, ToolMessage):
            out += _encode(m.tool_call_id or "")
        out.append(_END)
    return out + _REPLY_PRIMER


_PIECE_CHARS = 500_000  # the tokenizer refuses a text of 1,000,000 characters or more


def _encode(text: str) -> list[int]:
    # A long text (a tool's whole answer) is encoded in pieces; a token split at a piece's edge
    # counts as two, a rounding no price notices.
    encoding = _encoding()
    return [
        token
        for start in range(0, len(text), _PIECE_CHARS)
        for token in encoding.encode_ordinary(text[start : start + _PIECE_CHARS])
    ]


def count_messages(messages: Sequence[BaseMessage], tools: Sequence[dict] | None = None) -> int:
    """Prompt tokens for a chat request: every message, its tool calls, and the tool schemas."""
    return len(prompt_tokens(messages, tools))


def usage_metadata(
    messages: Sequence[BaseMessage],
    tools: Sequence[dict] | None,
    reply: AIMessage,
    cached_tokens: int = 0,
    prompt: Sequence[int] | None = None,
) -> dict[str, Any]:
    """LangChain `usage_metadata` for `reply` to a request of `messages` and `tools`, of whose
    prompt `cached_tokens` were read from the provider's prompt cache. `prompt` is the request's
    `prompt_tokens`, when the caller has it already."""
    input_tokens = len(prompt) if prompt is not None else count_messages(messages, tools)
    output_tokens = count_reply(reply)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_token_details": {"cache_read": cached_tokens},
    }


def count_reply(message: AIMessage) -> int:
    """Completion tokens for a reply: its text and its tool calls."""
    return count_text(_content_text(message.content)) + count_text(_tool_calls_text(message))
