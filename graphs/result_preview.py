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


def preview(text: str, limit: int) -> tuple[str, str]:
    """(At most `limit` characters standing for `text`, how): how is "whole" for text of `limit`
    characters or fewer, "outline" for JSON with long values cut, "compact" for JSON that only
    lost its whitespace, "start" for the text's first `limit` characters."""
    if len(text) <= limit:
        return text, "whole"
    outline = _json_outline(text)
    if outline is not None and len(outline[0]) <= limit:
        return outline[0], "outline" if outline[1] else "compact"
    return text[:limit], "start"


def _json_outline(text: str) -> tuple[str, bool] | None:
    """(The outline of a JSON text, whether anything was cut), or None for other text."""
    stripped = text.strip()
    if len(stripped) > MAX_PARSE_CHARS or stripped[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    cuts: list[None] = []
    shortened = _shorten(value, DEPTH, cuts)
    return json.dumps(shortened, ensure_ascii=False), bool(cuts)


def _shorten(value: Any, depth: int, cuts: list[None]) -> Any:
    """`value` with long strings, long lists and deep containers cut (each cut noted in `cuts`).
    Keys are kept whole: cut ones could collide, and a key is what says what a value is."""
    if isinstance(value, str):
        if len(value) <= STRING_CHARS:
            return value
        cuts.append(None)
        return value[:STRING_CHARS] + CUT
    if isinstance(value, dict | list) and value and depth == 0:
        cuts.append(None)
        return CUT
    if isinstance(value, dict):
        return {k: _shorten(v, depth - 1, cuts) for k, v in value.items()}
    if isinstance(value, list):
        kept = [_shorten(v, depth - 1, cuts) for v in value[:LIST_ITEMS]]
        if len(value) > LIST_ITEMS:
            cuts.append(None)
            kept.append(f"{CUT} {len(value) - LIST_ITEMS} more")
        return kept
    return value
