"""The query side of sql_query, run in a child process of its own (tools/sql.py starts it).

Why a process: SQLite checks the time limit (a progress handler) between its instructions, never
inside one, and some built-in functions loop for minutes inside one call (LIKE and GLOB are
quadratic: a 1 MB LIKE took 435 s), and a query may ask for gigabytes while its rows are read
(200 rows of wide columns took 1.6 GB). A child is killed at the deadline whatever it is doing,
and its address space is capped (MAX_MEMORY_BYTES). Inside it, the checks that give clear
messages stay: the read-only authorizer, the 1 MB value limit, the progress handler, and the
replaced printf/instr/replace/trims (tools/sql_printf.py, tools/sql_linear.py).

Standard library only, so the child starts in a few tens of milliseconds: it reads one JSON
request on stdin ({"database", "statement", "query", "timeout_s"}) and writes one JSON answer
({"text", "artifact"} or {"error"}).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools import sql_linear, sql_printf

MAX_ROWS_SHOWN = 200
MAX_CELL_CHARS = 200
# The whole table handed to the model: 200 rows of wide columns would otherwise be megabytes.
MAX_OUTPUT_CHARS = 20_000
MAX_VALUE_BYTES = 1_000_000  # of any one value a query makes (SQLITE_LIMIT_LENGTH)
# The child's address space: Python, SQLite's cache and sorts, and one row at a time (rows are
# read one by one and only their shown part is kept), with room for legitimate wide rows.
MAX_MEMORY_BYTES = 1 << 30
SCHEMA_HINT = (
    "List tables and their columns with: SELECT name, sql FROM sqlite_master WHERE type='table'"
)


class SqlRefused(Exception):
    """Why a query was refused or failed, said for the model (the tool raises it as its error)."""


_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Allowed action, dangerous function: never let a query load native code, nor read a pointer
# out of the process (fts3_tokenizer('simple') gives an 8-byte address: a help to exploits).
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})

SCHEMA_HINT = (
    "List tables and their columns with: SELECT name, sql FROM sqlite_master WHERE type='table'"
)


def read_only_authorizer(
    action: int, arg1: str | None, arg2: str | None, db_name: str | None, trigger: str | None
) -> int:
    """sqlite3 authorizer: allow reading (including sqlite_master), deny everything else."""
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


# Authorizer action codes by name, to say what a refused query tried.
_ACTION_NAMES = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ").lower()
    for name in (
        "SQLITE_CREATE_INDEX SQLITE_CREATE_TABLE SQLITE_CREATE_TEMP_INDEX SQLITE_CREATE_TEMP_TABLE "
        "SQLITE_CREATE_TEMP_TRIGGER SQLITE_CREATE_TEMP_VIEW SQLITE_CREATE_TRIGGER "
        "SQLITE_CREATE_VIEW SQLITE_DELETE SQLITE_DROP_INDEX SQLITE_DROP_TABLE "
        "SQLITE_DROP_TEMP_INDEX SQLITE_DROP_TEMP_TABLE SQLITE_DROP_TEMP_TRIGGER "
        "SQLITE_DROP_TEMP_VIEW SQLITE_DROP_TRIGGER SQLITE_DROP_VIEW SQLITE_INSERT SQLITE_PRAGMA "
        "SQLITE_TRANSACTION SQLITE_UPDATE SQLITE_ATTACH SQLITE_DETACH SQLITE_ALTER_TABLE "
        "SQLITE_REINDEX SQLITE_ANALYZE SQLITE_CREATE_VTABLE SQLITE_DROP_VTABLE SQLITE_SAVEPOINT "
        "SQLITE_FUNCTION"
    ).split()
}


class DenialRecorder:
    """The read-only authorizer, remembering what it denied first, so a refused SELECT is told
    what the database refused (a PRAGMA function, load_extension) instead of "only SELECT"."""

    def __init__(self) -> None:
        self.denied: tuple[int, str] | None = None
        self.refused = ""  # why printf or replace refused (sql_printf.py, sql_linear.py), if so

    def __call__(self, action: int, arg1: Any, arg2: Any, db_name: Any, trigger: Any) -> int:
        verdict = read_only_authorizer(action, arg1, arg2, db_name, trigger)
        if verdict == sqlite3.SQLITE_DENY and self.denied is None:
            subject = arg2 if action == sqlite3.SQLITE_FUNCTION else arg1
            self.denied = (action, subject or "")
        return verdict


def run(database: Path, statement: str, query: str, timeout_s: float) -> tuple[str, dict]:
    """Run one checked read-only statement here; (table text, {"rows", "columns", "empty"})."""
    deadline = time.monotonic() + timeout_s
    try:
        return _run(database, statement, query, deadline, timeout_s)
    except _NotUtf8:
        # Text that is not UTF-8 cannot reach a Python function: instr and replace go back to
        # SQLite's own for this query (tools/sql_linear.py), within the same time limit.
        return _run(database, statement, query, deadline, timeout_s, native_search=True)


class _NotUtf8(Exception):
    """A replaced function was given text that is not valid UTF-8 (internal)."""


def _run(
    database: Path,
    statement: str,
    query: str,
    deadline: float,
    timeout_s: float,
    *,
    native_search: bool = False,
) -> tuple[str, dict[str, Any]]:
    recorder = DenialRecorder()
    conn = connect_read_only(database, recorder, deadline, native_search)
    try:
        cursor = conn.execute(statement)
        columns = [d[0] for d in cursor.description or ()]
        table = _Table(columns)
        # One row at a time, keeping only what is shown: the rest is counted, so the model
        # learns how much was cut, and never held (a row may be megabytes).
        for row in cursor:
            table.add(row)
    except sqlite3.Error as exc:
        if recorder.refused:
            raise SqlRefused(f"sql_query refused '{shorten(query)}': {recorder.refused}") from None
        if _FUNCTION_RAISED in str(exc):
            # No function refused: Python's sqlite3 could not decode an argument to one.
            if not native_search:
                raise _NotUtf8 from None
            raise SqlRefused(
                f"sql_query failed on '{shorten(query)}': printf, format or a trim was given "
                "text that is not valid UTF-8 (they read text as UTF-8 here); use hex(), or "
                "CAST the value AS BLOB"
            ) from None
        raise _translate_error(exc, query, recorder.denied, timeout_s) from None
    finally:
        conn.close()
    artifact = {"rows": table.total, "columns": columns, "empty": table.total == 0}
    return table.text(), artifact


_FUNCTION_RAISED = "user-defined function raised exception"


def connect_read_only(
    database: Path,
    authorizer: DenialRecorder,
    deadline: float,
    native_search: bool = False,
) -> sqlite3.Connection:
    uri = database.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise SqlRefused(f"sql_query could not open the database '{database}': {exc}.") from None
    conn.set_authorizer(authorizer)
    # One short query can ask for gigabytes (randomblob(4e8)); no value may exceed 1 MB.
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)

    def refused(hint: str) -> Callable[[str], None]:
        def record(why: str) -> None:
            authorizer.refused = f"{why}. {hint}" if hint else why

        return record

    sql_printf.install(conn, MAX_VALUE_BYTES, refused("Format with round() or smaller widths."))
    sql_linear.install(conn, MAX_VALUE_BYTES, refused(""), native_search=native_search)
    # A non-zero return aborts the query ("interrupted"): runaway cross joins and recursions
    # end with this clear message; one slow instruction ends with the process (tools/sql.py).
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1_000)
    return conn


def _translate_error(
    exc: sqlite3.Error, query: str, denied: tuple[int, str] | None, timeout_s: float
) -> SqlRefused:
    message = str(exc)
    if "not authorized" in message and denied is not None:
        action, subject = _ACTION_NAMES.get(denied[0], f"action {denied[0]}"), denied[1]
        return SqlRefused(
            f"sql_query refused '{shorten(query)}': it starts like a read, but to run it "
            f"SQLite needs to {action} '{subject}', and only reading is allowed (no writes, "
            f"PRAGMA, ATTACH or extension loading). {SCHEMA_HINT}."
        )
    if "not authorized" in message:
        return SqlRefused(read_only_refusal(query))
    if "readonly database" in message:
        # A SELECT can hit this too: the file may need recovery or be in WAL mode in a folder
        # planexec cannot write to. Say so rather than blaming the query.
        return SqlRefused(
            f"sql_query could not read the database for '{shorten(query)}': SQLite answered "
            f"'{message}'. The query is a read, but the database needs write access to open "
            "(a journal to recover, or WAL mode). Ask the operator to check the database file."
        )
    if "one statement at a time" in message:
        return SqlRefused(
            f"sql_query refused: only one statement per call is allowed; got '{shorten(query)}'."
        )
    if "interrupted" in message:
        return SqlRefused(stopped(query, timeout_s))
    if "out of memory" in message:
        return SqlRefused(out_of_memory(query))
    return SqlRefused(f"sql_query failed on '{shorten(query)}': {message}. {SCHEMA_HINT}.")


def read_only_refusal(query: str) -> str:
    return f"sql_query refused: only read queries (SELECT/WITH) are allowed; got '{shorten(query)}'"


def stopped(query: str, timeout_s: float) -> str:
    return (
        f"sql_query stopped '{shorten(query)}' after {timeout_s:g} s. "
        "Add a WHERE clause or LIMIT, or avoid large joins."
    )


class _Table:
    """The table text of a result read one row at a time: the header, then rows while they fit
    (MAX_ROWS_SHOWN rows, MAX_OUTPUT_CHARS characters), then how many were not shown."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.lines = [" | ".join(_format_cell(c) for c in columns)]
        self.size = len(self.lines[0])
        self.total = 0
        self.full = False

    def add(self, row: tuple[Any, ...]) -> None:
        self.total += 1
        if self.full or self.total > MAX_ROWS_SHOWN:
            return
        line = " | ".join(_format_cell(v) for v in row)
        if self.size + len(line) + 1 > MAX_OUTPUT_CHARS:
            self.full = True
            return
        self.lines.append(line)
        self.size += len(line) + 1

    def text(self) -> str:
        if self.total == 0:
            return f"Query returned 0 rows (columns: {', '.join(self.columns)})."
        shown = len(self.lines) - 1
        if self.total == shown:
            return "\n".join(self.lines)
        cut = (
            f"... {self.total - shown} more rows not shown ({self.total} rows in total; at most "
            f"{MAX_ROWS_SHOWN} rows and {MAX_OUTPUT_CHARS} characters are shown). "
            "Add WHERE/LIMIT, fewer columns, or aggregate to see the rest."
        )
        return "\n".join([*self.lines, cut])


def _format_cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def shorten(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def serve() -> None:
    """The child's main: one request on stdin, one answer on stdout."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MAX_MEMORY_BYTES, MAX_MEMORY_BYTES))
    request = json.load(sys.stdin)
    # A backstop should the parent die without killing this process: CPU seconds, not wall.
    cpu = int(request["timeout_s"]) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        text, artifact = run(
            Path(request["database"]), request["statement"], request["query"], request["timeout_s"]
        )
        answer: dict[str, Any] = {"text": text, "artifact": artifact}
    except SqlRefused as exc:
        answer = {"error": str(exc)}
    except MemoryError:
        answer = {"error": out_of_memory(request["query"])}
    json.dump(answer, sys.stdout)


def out_of_memory(query: str) -> str:
    return (
        f"sql_query stopped '{shorten(query)}': it needed more than "
        f"{MAX_MEMORY_BYTES >> 20} MB of memory. Select fewer or shorter columns, or aggregate."
    )
