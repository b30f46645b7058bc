"""SQLite's instr(), replace() and trim(X, Y) in linear time, for sql_query's connections.

SQLite runs them as plain nested loops inside one function call, where the progress handler that
enforces the query time limit never runs: instr() of a 1 MB text and a 400 KB one took 8 s here,
replace() as long, and ltrim() of 200 KB by a set of 20,000 characters 11.5 s (of 1 MB by 50,000,
minutes). They are replaced on each connection by functions that take linear time: Python's
string search for instr and replace, a set of characters for the trims (Python's own strip
with characters is a nested loop too). Only texts (and for instr two blobs) take that way; any
other mix (numbers, NULLs, a text with a blob) is handed to a private in-memory SQLite
connection, so it behaves exactly as SQLite's own function, as printf does (tools/sql_printf.py).

replace() computes its result's size before building it: 1 MB of text with each of its
characters replaced by 1 MB would otherwise be a terabyte in memory before SQLite's length limit
could refuse it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any


class TooBig(ValueError):
    """A replace() whose result would pass the length limit."""


def install(conn: sqlite3.Connection, length_limit: int, on_refused: Callable[[str], None]) -> None:
    """Replace instr and replace on `conn`. A result past `length_limit` bytes fails the query
    as SQLite's would; `on_refused` gets why (SQLite says only "user-defined function raised
    exception")."""
    inner = sqlite3.connect(":memory:", check_same_thread=False)
    inner.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length_limit)

    def instr(haystack: Any, needle: Any) -> Any:
        if _same_kind(haystack, needle):
            return haystack.find(needle) + 1
        return inner.execute("SELECT instr(?, ?)", (haystack, needle)).fetchone()[0]

    def replace(text: Any, old: Any, new: Any) -> Any:
        if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
            return inner.execute("SELECT replace(?, ?, ?)", (text, old, new)).fetchone()[0]
        if not old:
            return text
        growth = text.count(old) * (len(new.encode()) - len(old.encode()))
        if len(text.encode()) + growth > length_limit:
            why = f"replace() would make a value of over {length_limit:,} bytes"
            on_refused(why)
            raise TooBig(why)
        return text.replace(old, new)

    def trimmer(name: str, strip: Callable[[str, set[str]], str]) -> Callable[[Any, Any], Any]:
        def trim(text: Any, chars: Any) -> Any:
            if isinstance(text, str) and isinstance(chars, str):
                return strip(text, set(chars))
            return inner.execute(f"SELECT {name}(?, ?)", (text, chars)).fetchone()[0]

        return trim

    conn.create_function("instr", 2, instr, deterministic=True)
    conn.create_function("replace", 3, replace, deterministic=True)
    for name, strip in (("ltrim", _lstrip), ("rtrim", _rstrip), ("trim", _strip)):
        conn.create_function(name, 2, trimmer(name, strip), deterministic=True)


def _same_kind(haystack: Any, needle: Any) -> bool:
    """Two texts or two blobs: the cases Python searches exactly as SQLite does."""
    return (isinstance(haystack, str) and isinstance(needle, str)) or (
        isinstance(haystack, bytes) and isinstance(needle, bytes)
    )


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
