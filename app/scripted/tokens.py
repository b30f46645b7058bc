"""Token counts from a real BPE tokenizer that works offline (o200k_base, as GPT-4o uses).

The scripted model and the local OpenAI-compatible server count with this, over the messages and
tool schemas they actually received, so cost figures are those of the prompts the graph builds.
The framing constants follow OpenAI's published chat-format accounting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import bpe_openai
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

TOKENS_PER_MESSAGE = 3  # <|start|>role ... <|end|>
TOKENS_PER_REPLY = 3  # every reply is primed with <|start|>assistant


@lru_cache(maxsize=1)
def _encoding() -> Any:
    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    """Tokens in a piece of text."""
    return len(_encoding().encode_ordinary(text)) if text else 0


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


def count_messages(messages: Sequence[BaseMessage], tools: Sequence[dict] | None = None) -> int:
    """Prompt tokens for a chat request: every message, its tool calls, and the tool schemas."""
    total = TOKENS_PER_REPLY
    for m in messages:
        total += TOKENS_PER_MESSAGE + count_text(m.type) + count_text(_content_text(m.content))
        total += count_text(_tool_calls_text(m))
        if isinstance(m, ToolMessage):
            total += count_text(m.tool_call_id or "")
    if tools:
        total += count_text(json.dumps(list(tools), sort_keys=True, default=str))
    return total


def usage_metadata(
    messages: Sequence[BaseMessage], tools: Sequence[dict] | None, reply: AIMessage
) -> dict[str, int]:
    """LangChain `usage_metadata` for `reply` to a request of `messages` and `tools`."""
    input_tokens = count_messages(messages, tools)
    output_tokens = count_reply(reply)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def count_reply(message: AIMessage) -> int:
    """Completion tokens for a reply: its text and its tool calls."""
    return count_text(_content_text(message.content)) + count_text(_tool_calls_text(message))
