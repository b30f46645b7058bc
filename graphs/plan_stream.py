"""Complete plan steps out of a plan reply that is still streaming.

The planner's reply is JSON, `{"steps": [{...}, {...}, ...`, arriving a few characters at a time
(as tool-call arguments or as content, depending on the provider). A step can start as soon as its
own object is complete, so this reads the text so far and returns each step object the moment its
closing brace has arrived: `json.JSONDecoder.raw_decode` parses one whole value at a position and
fails on a partial one, which is exactly the test "this step's definition is complete". Partial-
JSON parsers (`parse_partial_json`, jiter's partial mode) instead complete a truncated object,
so they cannot tell a finished step from one whose description is still arriving.

A reply that does not open with `{"steps": [` yields nothing early; the whole reply is still
parsed and validated as usual when it ends, so the plan is only late, never wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

_OPENING = re.compile(r'\s*\{\s*"steps"\s*:\s*\[')
_SEPARATOR = re.compile(r"\s*,?\s*")
_DECODER = json.JSONDecoder()


class StepStream:
    """Feed it the reply text so far; it hands back each newly complete step object once."""

    def __init__(self) -> None:
        self._pos: int | None = None  # where the next step object starts, once `[` is seen
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
            start = _SEPARATOR.match(text, self._pos).end()
            if start >= len(text):
                return found
            if text[start] == "]":
                self._closed = True
                return found
            try:
                value, end = _DECODER.raw_decode(text, start)
            except json.JSONDecodeError:
                return found  # this step is still arriving
            self._pos = end
            if isinstance(value, dict):
                found.append(value)
