"""What the end-of-run call is shown of a step result later steps already used.

Those steps carried on what the plan needed of it (a value taken by a reference, the summary of
a page), so the end call needs its gist, not all of it. A prefix is a poor gist of JSON: a
look-up's record spends its first hundreds of characters on one long field and the key the
answer needs may come after it. So a JSON result keeps its shape, every key and the start of
every value, with long strings and lists cut (marked `…`); any other text keeps its start.
"""

from __future__ import annotations

import json
from typing import Any

STRING_CHARS = 40  # of a string inside a JSON preview: its start, enough to say what it is
LIST_ITEMS = 3  # of a list inside a JSON preview
DEPTH = 3  # levels of a JSON preview; deeper containers are shown as …
MAX_PARSE_CHARS = 200_000  # longer results are not parsed for a preview: their start is shown
CUT = "…"


def preview(text: str, limit: int) -> tuple[str, bool]:
    """(At most `limit` characters standing for `text`, whether it is a JSON outline rather
    than the text's start.) Text of `limit` characters or fewer is returned as it is."""
    if len(text) <= limit:
        return text, False
    outline = _json_outline(text)
    if outline is not None and len(outline) <= limit:
        return outline, True
    return text[:limit], False


def _json_outline(text: str) -> str | None:
    stripped = text.strip()
    if len(stripped) > MAX_PARSE_CHARS or stripped[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return json.dumps(_shorten(value, DEPTH), ensure_ascii=False)


def _shorten(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= STRING_CHARS else value[:STRING_CHARS] + CUT
    if isinstance(value, dict):
        if depth == 0:
            return CUT if value else {}
        return {str(k)[:STRING_CHARS]: _shorten(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth == 0:
            return CUT if value else []
        kept = [_shorten(v, depth - 1) for v in value[:LIST_ITEMS]]
        return kept + ([f"{CUT} {len(value) - LIST_ITEMS} more"] if len(value) > LIST_ITEMS else [])
    return value
