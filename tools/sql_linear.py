"""SQLite's instr(), replace() and trim(X, Y) in linear time, for sql_query's connections.

SQLite runs them as plain nested loops inside one function call, where the progress handler that
enforces the query time limit never runs: instr() of a 1 MB text and a 400 KB one took 8 s here,
replace() as long, and ltrim() of 200 KB by a set of 20,000 characters 11.5 s (of 1 MB by 50,000,
minutes). They are replaced on each connection by functions that take linear time and answer as
SQLite's own for every value Python can hand them: texts, blobs (read as text the way SQLite
reads them, byte for byte), numbers (in SQLite's own text form) and NULLs.

Two limits of doing it in Python:
- Text that is not valid UTF-8 never reaches the function: Python's sqlite3 fails the call while
  decoding the argument. `sql_engine.run` then runs the query again with SQLite's own instr and
  replace (as before these functions were replaced: time bounded per call by the 1 MB value
  limit). The trims stay replaced: on such text SQLite's take minutes.
- A function returns text only as valid UTF-8: a result that would not be (replace or a trim of
  a blob holding other bytes) is refused, saying why.

replace() computes its result's size before building it: 1 MB of text with each of its
characters replaced by 1 MB would otherwise be a terabyte in memory before SQLite's length limit
could refuse it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

NATIVE_TRIM_WORK = 10_000_000  # bytes x set bytes SQLite's own trim may loop over (~0.1 s)
_NOT_UTF8 = (
    "{function}() would make text that is not valid UTF-8 (from a blob of other bytes); use "
    "hex(), or CAST a blob AS TEXT only when it holds text"
)
# Bytes that continue a UTF-8 character: SQLite's text functions step over them.
_CONTINUATION = bytes(range(0x80, 0xC0))


class Refused(ValueError):
    """A call these functions cannot answer as SQLite would (too big, or not UTF-8 text)."""


def install(
    conn: sqlite3.Connection,
    length_limit: int,
    on_refused: Callable[[str], None],
    *,
    native_search: bool = False,
) -> None:
    """Replace the trims, and unless `native_search`, instr and replace on `conn`. A refusal
    fails the query (SQLite says only "user-defined function raised exception"); `on_refused`
    gets why."""
    inner = sqlite3.connect(":memory:", check_same_thread=False)

    def as_text(value: Any) -> bytes:
        """`value` as the UTF-8 bytes SQLite reads for it as text (sqlite3_value_text)."""
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, float):  # SQLite's own form ("1.0e+20"), not Python's
            return str(inner.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]).encode()
        return str(value).encode()  # an integer

    def refuse(why: str) -> Refused:
        on_refused(why)
        return Refused(why)

    def text_result(data: bytes, function: str) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise refuse(_NOT_UTF8.format(function=function)) from None

    def instr(haystack: Any, needle: Any) -> Any:
        if haystack is None or needle is None:
            return None
        if isinstance(haystack, str) and isinstance(needle, str):
            return haystack.find(needle) + 1  # characters: UTF-8 text searched as text
        if isinstance(haystack, bytes) and isinstance(needle, bytes):
            return haystack.find(needle) + 1  # two blobs: bytes
        return _text_instr(as_text(haystack), as_text(needle))

    def replace(text: Any, old: Any, new: Any) -> Any:
        if text is None or old is None:
            return None
        pattern = as_text(old)
        if not pattern or pattern[0] == 0:
            # An empty pattern (one starting with NUL reads as empty) searches nothing: SQLite's
            # own answer, whose type has changed between its versions.
            try:
                return inner.execute("SELECT replace(?, ?, ?)", (text, old, new)).fetchone()[0]
            except sqlite3.OperationalError:  # its text is not UTF-8: Python cannot take it
                raise refuse(_NOT_UTF8.format(function="replace")) from None
        if new is None:
            return None
        source, replacement = as_text(text), as_text(new)
        size = len(source) + source.count(pattern) * (len(replacement) - len(pattern))
        if size > length_limit:
            raise refuse(
                f"replace() would make a value of over {length_limit:,} bytes; select less, or "
                "replace in parts"
            )
        return text_result(source.replace(pattern, replacement), "replace")

    raw = sqlite3.connect(":memory:", check_same_thread=False)
    raw.text_factory = bytes  # SQLite's text as it made it, UTF-8 or not

    def trimmer(name: str, strip: Callable[[str, set[str]], str]) -> Callable[[Any, Any], Any]:
        def trim(text: Any, chars: Any) -> Any:
            if text is None or chars is None:
                return None
            # SQLite reads the set up to its first NUL (a C string), the text to its length.
            source, charset = as_text(text), as_text(chars).split(b"\0", 1)[0]
            try:
                return strip(source.decode(), set(charset.decode()))
            except UnicodeDecodeError:  # SQLite matches such bytes its own way: ask it, if
                pass  # that is cheap enough
            if len(source) * max(len(charset), 1) > NATIVE_TRIM_WORK:
                raise refuse(
                    f"{name}() of text or a set of characters that is not valid UTF-8 is too "
                    "long to trim here; use hex(), or select less"
                )
            query = f"SELECT {name}(?, ?)"
            return text_result(raw.execute(query, (text, chars)).fetchone()[0], name)

        return trim

    if not native_search:
        conn.create_function("instr", 2, instr, deterministic=True)
        conn.create_function("replace", 3, replace, deterministic=True)
    for name, strip in (("ltrim", _lstrip), ("rtrim", _rstrip), ("trim", _strip)):
        conn.create_function(name, 2, trimmer(name, strip), deterministic=True)


def _text_instr(haystack: bytes, needle: bytes) -> int:
    """SQLite's instr() of two values read as text, on their bytes: it tries the haystack's
    first byte, then each byte that does not continue a UTF-8 character, and counts those."""
    if not needle:
        return 1
    if needle[0] in _CONTINUATION:  # only the first position can start with one
        return 1 if haystack.startswith(needle) else 0
    at = haystack.find(needle)  # every match starts at a position SQLite tries
    if at <= 0:
        return at + 1
    skipped = len(haystack[1:at]) - len(haystack[1:at].translate(None, _CONTINUATION))
    return 1 + at - skipped


def _lstrip(text: str, chars: set[str]) -> str:
    start = 0
    while start < len(text) and text[start] in chars:
        start += 1
    return text[start:]


def _rstrip(text: str, chars: set[str]) -> str:
    end = len(text)
    while end > 0 and text[end - 1] in chars:
        end -= 1
    return text[:end]


def _strip(text: str, chars: set[str]) -> str:
    return _rstrip(_lstrip(text, chars), chars)
