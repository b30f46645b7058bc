"""Complete plan steps out of a plan reply that is still streaming.

The planner's reply is JSON, `{"steps": [{...}, {...}, ...`, arriving a few characters at a time
(as tool-call arguments or as content, depending on the provider). A step can start as soon as its
own object is complete, so this reads the text so far and returns each step object the moment its
closing brace has arrived: `json.JSONDecoder.raw_decode` parses one whole value at a position and
fails on a partial one, which is exactly the test "this step's definition is complete". Partial-
JSON parsers (`parse_partial_json`, jiter's partial mode) instead complete a truncated object,
so they cannot tell a finished step from one whose description is still arriving.

Plans written as lines (graphs/plan_text.py) stream the same way through `LineStream`: a step is
complete when its line's newline arrives.

A reply that does not open with `{"steps": [` yields nothing early; the whole reply is still
parsed and validated as usual when it ends, so the plan is only late, never wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from prompts.untrusted import storable

T = TypeVar("T")

_OPENING = re.compile(r'\s*\{\s*"steps"\s*:\s*\[')
_SEPARATOR = re.compile(r"\s*,?\s*")
_DECODER = json.JSONDecoder()
_IN_STRING = re.compile(r'["\\]')  # what ends a string, or escapes its next character
_OUTSIDE = re.compile(r'["{}]')


class StepSource(Protocol):
    """Reads a reply as it grows: `feed(text so far)` returns the steps newly complete in it
    (StepStream for a JSON plan, graphs.plan_text.LineStream for plan lines)."""

    def feed(self, text: str) -> list[dict[str, Any]]: ...


class StepStream:
    """Feed it the reply text so far; it hands back each newly complete step object once.

    Each character is read once: the object still arriving is scanned on from where the last
    feed stopped (inside a string or not, braces open), and parsed when its closing brace
    comes. Parsing it again from its start on every chunk made a 200 KB step take seconds."""

    def __init__(self) -> None:
        self._pos: int | None = None  # where the next step object starts, once `[` is seen
        self._scan: int | None = None  # how far the object arriving has been read
        self._depth = 0
        self._in_string = self._escaped = False
        self._closed = False

    def feed(self, text: str) -> list[dict[str, Any]]:
        if self._closed:
            return []
        if self._pos is None:
            opening = _OPENING.match(text)
            if opening is None:
                return []
            self._pos = opening.end()
        found: list[dict[str, Any]] = []
        while True:
            if self._scan is None:  # between two steps
                start = _SEPARATOR.match(text, self._pos).end()
                if start >= len(text):
                    return found
                if text[start] != "{":  # `]`, or not a step object: the whole reply decides
                    self._closed = True
                    return found
                self._pos, self._scan = start, start
            end = self._object_end(text)
            if end is None:
                return found  # this step is still arriving
            try:
                value, parsed_to = _DECODER.raw_decode(text, self._pos)
            except json.JSONDecodeError:  # braces that close, text that is not JSON
                parsed_to = -1
            if parsed_to != end:
                self._closed = True
                return found
            self._pos, self._scan = end, None
            found.append(value)

    def _object_end(self, text: str) -> int | None:
        """Where the object arriving ends (after its closing brace), or None when it has not
        yet; reads on from `_scan` and keeps its place."""
        assert self._scan is not None
        at = self._scan
        while True:
            if self._escaped:  # the character after a backslash in a string
                if at >= len(text):
                    break
                self._escaped, at = False, at + 1
            found = (_IN_STRING if self._in_string else _OUTSIDE).search(text, at)
            if found is None:
                break
            char, at = found.group(), found.end()
            if char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = not self._in_string
            elif char == "{":
                self._depth += 1
            else:  # "}"
                self._depth -= 1
                if self._depth == 0:
                    return at
        self._scan = len(text)
        return None


class PlanStreamHandler(BaseCallbackHandler):
    """Watches the planner's model calls stream and hands over each complete step object.

    `on_attempt()` is called as each model call (first try or a retry) starts; `on_step(obj)`
    with each step object the moment it is complete. Tool-call arguments (function calling)
    and content (JSON mode) are read separately, so either way of answering streams.

    Defining `tap_output_iter`/`tap_output_aiter` makes LangChain stream the call (its
    streaming-handler protocol, as LangGraph's `stream_mode="messages"` does), and
    `run_inline` runs the callbacks on the event loop, where the steps start.
    """

    run_inline = True

    def __init__(
        self,
        on_step: Callable[[dict[str, Any]], None],
        on_attempt: Callable[[], None],
        stream: Callable[[], StepSource] = StepStream,
    ) -> None:
        self.on_step, self.on_attempt, self.stream = on_step, on_attempt, stream
        self._reset()

    def _reset(self) -> None:
        self._args, self._content = "", ""
        self._from_args, self._from_content = self.stream(), self.stream()

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self._reset()
        self.on_attempt()

    def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
        message = getattr(chunk, "message", None)
        if message is None:
            return
        args = "".join(
            c.get("args") or ""
            for c in getattr(message, "tool_call_chunks", None) or []
            if (c.get("index") or 0) == 0
        )
        found: list[dict[str, Any]] = []
        if args:
            self._args += args
            found += self._from_args.feed(self._args)
        if isinstance(message.content, str) and message.content:
            self._content += message.content
            found += self._from_content.feed(self._content)
        for step in found:  # storable as graphs/structured.py makes the whole reply's plan
            self.on_step(storable(step))

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        return output

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        return output
