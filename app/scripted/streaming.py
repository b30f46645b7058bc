"""How a scripted reply streams: the pieces it arrives in and the wait before each.

The scripted chat model (`_stream`/`_astream`) and the scenario server (SSE) send the same pieces
with the same waits, so a streamed run takes as long offline as over HTTP. The latency model is
the usual one for hosted models: a time to the first token (`Scenario.latency`), then a cost per
output token (`Scenario.token_latency`). Each piece's wait is its share of the output tokens, so
the pieces add up to exactly the unstreamed call's time.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from langchain_core.messages import AIMessage

PIECE_CHARS = 16  # about four tokens: real endpoints send one to a few tokens per chunk


@dataclass
class Delta:
    """One streamed piece: reply text, or a piece of one tool call (id and name on its first)."""

    content: str = ""
    call_index: int | None = None
    call_id: str | None = None
    name: str | None = None
    args: str = ""
    wait: float = 0.0
    """Seconds between the previous piece (or the request) and this one."""


def reply_text(reply: AIMessage) -> str:
    if isinstance(reply.content, str):
        return reply.content
    return "".join(b.get("text", "") for b in reply.content if isinstance(b, dict))


def deltas(reply: AIMessage, first_token: float, per_token: float) -> list[Delta]:
    """The pieces `reply` streams in: text first, then each tool call's arguments."""
    out = [Delta(content=piece) for piece in _pieces(reply_text(reply))]
    for index, call in enumerate(reply.tool_calls):
        args = json.dumps(call.get("args", {}))
        out.append(Delta(call_index=index, call_id=call.get("id") or "", name=call["name"]))
        out += [Delta(call_index=index, args=piece) for piece in _pieces(args)]
    if not out:
        out.append(Delta())
    tokens = int((reply.usage_metadata or {}).get("output_tokens", 0))
    chars = sum(len(d.content) + len(d.args) for d in out) or 1
    for d in out:
        d.wait = per_token * tokens * (len(d.content) + len(d.args)) / chars
    out[0].wait += first_token
    return out


def total_wait(reply: AIMessage, first_token: float, per_token: float) -> float:
    """How long the whole reply takes, streamed or not."""
    return first_token + per_token * int((reply.usage_metadata or {}).get("output_tokens", 0))


def _pieces(text: str) -> Iterator[str]:
    return (text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS))


class StreamDropped(ConnectionError):
    """A scripted stream cut mid-way (`PlanReply.drop_at`): transient, like a dropped connection."""


class StreamDrops:
    """How many times each dropping reply has dropped, so that only its first `drops` streamed
    calls are cut. Thread-safe: parallel runs and the server's requests share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, ...], int] = {}

    def take(self, key: tuple[str, ...], times: int | None) -> bool:
        """Whether the call of `key` drops now (and count it)."""
        with self._lock:
            seen = self._seen.get(key, 0)
            if times is not None and seen >= times:
                return False
            self._seen[key] = seen + 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def cut_at(pieces: int, share: float) -> int:
    """How many of a stream's `pieces` arrive before it drops at `share`: never all of them."""
    return max(0, min(pieces - 1, math.ceil(pieces * share)))
