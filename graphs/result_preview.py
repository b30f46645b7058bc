"""What the end-of-run call is shown of a step result too long to show whole.

A prefix is a poor gist of JSON: a look-up's record spends its first hundreds of characters on
one long field, and the key the answer needs may come after it. So a JSON result keeps its shape,
every key and the start of every value, with long strings (and, for a result later steps already
used, long lists and deep containers) cut and marked `…`; any other text keeps its start.

Two uses (graphs/replanner.py's `_results`):

- a result later steps used: those steps carried on what the plan needed of it, so the end call
  needs its gist: strings keep their first STRING_CHARS, lists LIST_ITEMS, DEPTH levels;
- a result no step used, which the answer may be written from: `fill=True` keeps every key and
  item and lets long strings keep as much as fits, so the cut takes the tail of the long text,
  not the keys after it.

Outlines are written compactly (no space after `,` or `:`): they are ours to write, and spaces
are tokens.
"""

from __future__ import annotations

import json
from typing import Any

STRING_CHARS = 40  # of a string inside a JSON preview: its start, enough to say what it is
LIST_ITEMS = 3  # of a list inside a JSON preview
DEPTH = 3  # levels of a JSON preview; deeper containers are shown as …
MAX_PARSE_CHARS = 200_000  # longer results are not parsed for a preview: their start is shown
CUT = "…"


def preview(text: str, limit: int, *, fill: bool = False) -> tuple[str, str]:
    """(At most `limit` characters standing for `text`, how): how is "whole" for text of `limit`
    characters or fewer, "outline" for JSON with long values cut, "compact" for JSON that only
    lost its whitespace, "start" for the text's first `limit` characters. With `fill`, nothing
    but long strings is cut, each keeping as much as lets the outline fit in `limit`."""
    if len(text) <= limit:
        return text, "whole"
    value = _parsed(text)
    if value is not None:
        outline = (
            _filled(value, limit) if fill else _outline(value, STRING_CHARS, LIST_ITEMS, DEPTH)
        )
        if outline is not None and len(outline[0]) <= limit:
            return outline[0], "outline" if outline[1] else "compact"
    return text[:limit], "start"


def _parsed(text: str) -> Any:
    """The JSON value of `text` if it is a JSON object or list (not too long to parse), or None."""
    stripped = text.strip()
    if len(stripped) > MAX_PARSE_CHARS or stripped[:1] not in ("{", "["):
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


def _filled(value: Any, limit: int) -> tuple[str, bool] | None:
    """The outline of `value` with the longest string cut that fits in `limit`, or None when even
    strings cut at STRING_CHARS do not fit (the structure alone is too long)."""
    whole = _outline(value, None, None, None)
    if whole is None or len(whole[0]) <= limit:
        return whole
    low, high = STRING_CHARS, limit  # the outline's length grows with the string cut
    best = _outline(value, low, None, None)
    if best is None or len(best[0]) > limit:
        return None
    while low < high:  # the longest cut whose outline fits
        mid = (low + high + 1) // 2
        outline = _outline(value, mid, None, None)
        if outline is not None and len(outline[0]) <= limit:
            low, best = mid, outline
        else:
            high = mid - 1
    return best


def _outline(
    value: Any, string_chars: int | None, list_items: int | None, depth: int | None
) -> tuple[str, bool] | None:
    """(`value` as compact JSON with the given cuts, whether anything was cut), or None when it
    is too deep to write. A cut given as None is not made."""
    cuts: list[None] = []
    try:
        shortened = _shorten(value, string_chars, list_items, depth, cuts)
        return json.dumps(shortened, ensure_ascii=False, separators=(",", ":")), bool(cuts)
    except RecursionError:
        return None


def _shorten(
    value: Any, string_chars: int | None, list_items: int | None, depth: int | None, cuts: list
) -> Any:
    """`value` with long strings, long lists and deep containers cut (each cut noted in `cuts`).
    Keys are kept whole: cut ones could collide, and a key is what says what a value is."""
    if isinstance(value, str):
        if string_chars is None or len(value) <= string_chars:
            return value
        cuts.append(None)
        return value[:string_chars] + CUT
    if isinstance(value, dict | list) and value and depth == 0:
        cuts.append(None)
        return CUT
    deeper = None if depth is None else depth - 1
    if isinstance(value, dict):
        return {k: _shorten(v, string_chars, list_items, deeper, cuts) for k, v in value.items()}
    if isinstance(value, list):
        kept = value if list_items is None else value[:list_items]
        shortened = [_shorten(v, string_chars, list_items, deeper, cuts) for v in kept]
        if len(value) > len(kept):
            cuts.append(None)
            shortened.append(f"{CUT} {len(value) - len(kept)} more")
        return shortened
    return value
