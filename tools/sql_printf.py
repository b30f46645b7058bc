"""SQLite's printf()/format() with bounded widths, for sql_query's connections.

SQLite's progress handler runs between VM steps, never inside one function call, and printf pads
or repeats inside one call: `printf('%.*c', 2147483647, 'x')` loops two billion times (13 s here,
past the 10 s query limit, and a 20,000-character query holds hundreds of them). The length
limit cuts only the output, not the loop. So printf and its alias format are replaced on each
connection by a function that checks every width and precision, literal or taken from an
argument (`*`), and then lets a private in-memory SQLite connection format as SQLite would.

The parse follows SQLite's (printf.c): flags `-+ #!0,`, a width (digits or `*`), a precision
(`.` then digits or `*`), `l`/`ll`, then the conversion; `%%` and `%n` take no argument, every
other conversion takes the next one (a missing one counts as 0 or empty, as in SQLite).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

MAX_WIDTH = 1_000  # of any width or precision: far above a report's needs, far below a DoS
_SPEC = re.compile(r"%([-+ #!0,]*)(\*|\d+)?(?:\.(\*|\d*))?(l{0,2})(.?)", re.DOTALL)
_NO_ARGUMENT = {"%", "n"}


class PrintfRefused(ValueError):
    """A width or precision above MAX_WIDTH, with where it was."""


def check_widths(fmt: str, args: tuple[Any, ...], to_int: Callable[[Any], int]) -> None:
    """PrintfRefused when a conversion of `fmt` would pad or repeat more than MAX_WIDTH.
    `to_int` reads a `*` argument as SQLite does ('12abc' is 12)."""
    position = 0  # the next argument a conversion or a `*` takes

    def take() -> Any:
        nonlocal position
        value = args[position] if position < len(args) else 0
        position += 1
        return value

    index = 0
    while (found := fmt.find("%", index)) >= 0:
        match = _SPEC.match(fmt, found)
        assert match is not None  # every part of the pattern may be empty
        index = match.end()
        for part in (match.group(2), match.group(3)):
            if not part:
                continue
            if part == "*":
                size = to_int(take())
            else:  # digits; a long run is refused unread (int() of it would be slow)
                size = int(part) if len(part) <= 7 else MAX_WIDTH + 1
            if abs(size) > MAX_WIDTH:
                raise PrintfRefused(
                    f"printf/format width or precision {part if part != '*' else size} in "
                    f"{match.group(0)[:40]!r} is above {MAX_WIDTH}"
                )
        if match.group(5) not in _NO_ARGUMENT:
            take()


def install(conn: sqlite3.Connection, length_limit: int, on_refused: Callable[[str], None]) -> None:
    """Replace printf and format on `conn` with the bounded one. A refusal fails the query
    (SQLite says only "user-defined function raised exception"): `on_refused` gets why."""
    inner = sqlite3.connect(":memory:", check_same_thread=False)
    inner.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length_limit)

    def to_int(value: Any) -> int:
        return int(inner.execute("SELECT CAST(? AS INTEGER)", (value,)).fetchone()[0] or 0)

    def printf(fmt: Any = None, *args: Any) -> Any:
        if fmt is None:
            return None
        try:
            check_widths(str(fmt), args, to_int)
        except PrintfRefused as exc:
            on_refused(str(exc))
            raise
        placeholders = ", ".join("?" * (len(args) + 1))
        return inner.execute(f"SELECT printf({placeholders})", (fmt, *args)).fetchone()[0]

    for name in ("printf", "format"):
        conn.create_function(name, -1, printf, deterministic=True)
