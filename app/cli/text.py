"""Untrusted text made safe to print: never read as markup, control characters made visible.

Light on purpose (rich.text only): the command line imports it at startup for its error lines.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rich.text import Text

# C0/C1 control characters except tab and newline; the bidi controls that reorder a line
# (embeddings, overrides, isolates, and the marks U+200E, U+200F, U+061C); the invisible ones
# that hide text or shift a table's columns (zero-width space, word joiner, BOM). The zero-width
# joiners U+200C/U+200D stay: Persian and Indic text and emoji sequences need them.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b\u2060\ufeff]"
)


def visible(text: Any) -> str:
    """`text` with control characters written as escapes (ESC -> \\x1b, U+202E -> \\u202e)."""
    return _CONTROL.sub(_escape_char, str(text))


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: Any, limit: int | None = None) -> str:
    """`text` made visible, its whitespace runs (newlines too) collapsed to one space; with
    `limit`, at most that many characters, a cut one ending in "…" (a cut number must not read
    as a smaller one: "ask for 12" of "ask for 120")."""
    line = " ".join(visible(text).split())
    if limit is None or len(line) <= limit:
        return line
    return line[: max(0, limit - 1)] + "…"


def plain(text: Any, style: str = "") -> Text:
    """Untrusted text for rich: shown as given, never read as markup."""
    return Text(visible(text), style=style)


def labelled(label: str, text: Any, style: str = "red") -> Text:
    """`label` (ours, styled) followed by untrusted `text`, e.g. an error message."""
    return Text.assemble((label, style), " ", visible(text))


def json_text(value: Any, indent: int | None = None) -> str:
    """`value` as JSON any parser reads: a model may give NaN or Infinity as a tool argument
    (Python's JSON reads and writes them; JSON has none), so non-finite numbers are written as
    strings; objects JSON cannot hold as their text."""
    return json.dumps(_finite(value), default=str, indent=indent, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
