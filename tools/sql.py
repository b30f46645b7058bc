"""sql_query: read-only SQL over one SQLite file.

Three layers, because each one alone has gaps:
1. a text check (one statement, starting with SELECT/WITH) for clear refusal messages;
2. the file is opened with `mode=ro`, so SQLite itself refuses writes to it;
3. an authorizer that only allows what a SELECT needs. This is the real guard:
   `mode=ro` alone still allows ATTACH (and so `VACUUM INTO`, which writes a new
   file), and `WITH ... DELETE` passes the text check.

Time and size: a progress handler stops a query after QUERY_TIMEOUT_S, no value may exceed
1 MB, and the functions that can loop for seconds or minutes inside one call, where the handler
never runs, are replaced: printf/format have their widths bounded (tools/sql_printf.py), instr,
replace and the trims with a character set take linear time (tools/sql_linear.py).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools import sql_linear, sql_printf
from tools.settings import ToolSettings

MAX_ROWS_SHOWN = 200
MAX_CELL_CHARS = 200
# The whole table handed to the model: 200 rows of wide columns would otherwise be megabytes.
MAX_OUTPUT_CHARS = 20_000
# A query longer than this is refused before any parsing: splitting and checking stay cheap.
MAX_QUERY_CHARS = 20_000
QUERY_TIMEOUT_S = 10.0
MAX_VALUE_BYTES = 1_000_000  # of any one value a query makes (SQLITE_LIMIT_LENGTH)
READ_KEYWORDS = frozenset({"SELECT", "WITH"})

_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Allowed action, dangerous function: never let a query load native code.
_DENIED_FUNCTIONS = frozenset({"load_extension"})

_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?(?:\*/|$)", re.S)
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


class _DenialRecorder:
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


def run_query(settings: ToolSettings, query: str) -> tuple[str, dict[str, Any]]:
    """Run one read-only query; return (table text, {"rows", "columns", "empty"})."""
    if settings.sql_database is None:
        raise ToolException("sql_query: no database is configured (set sql_database)")
    statement = _check_statement(query)
    database = Path(settings.sql_database)
    if not database.is_file():
        raise ToolException(
            f"sql_query: the database file '{database}' does not exist. "
            "The sql_database setting points to a missing file; the query cannot run."
        )
    deadline = time.monotonic() + QUERY_TIMEOUT_S
    try:
        return _run(database, statement, query, deadline)
    except _NotUtf8:
        # Text that is not UTF-8 cannot reach a Python function: instr and replace go back to
        # SQLite's own for this query (tools/sql_linear.py), within the same time limit.
        return _run(database, statement, query, deadline, native_search=True)


class _NotUtf8(Exception):
    """A replaced function was given text that is not valid UTF-8 (internal)."""


def _run(
    database: Path, statement: str, query: str, deadline: float, *, native_search: bool = False
) -> tuple[str, dict[str, Any]]:
    recorder = _DenialRecorder()
    conn = _connect_read_only(database, recorder, deadline, native_search)
    try:
        cursor = conn.execute(statement)
        columns = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchmany(MAX_ROWS_SHOWN)
        # Count the rest without keeping it, so the model learns how much was cut.
        total = len(rows) + sum(1 for _ in cursor)
    except sqlite3.Error as exc:
        if recorder.refused:
            refusal = f"sql_query refused '{_shorten(query)}': {recorder.refused}"
            raise ToolException(refusal) from None
        if _FUNCTION_RAISED in str(exc):
            # No function refused: Python's sqlite3 could not decode an argument to one.
            if not native_search:
                raise _NotUtf8 from None
            raise ToolException(
                f"sql_query failed on '{_shorten(query)}': printf, format or a trim was given "
                "text that is not valid UTF-8 (they read text as UTF-8 here); use hex(), or "
                "CAST the value AS BLOB"
            ) from None
        raise _translate_error(exc, query, recorder.denied) from None
    finally:
        conn.close()
    artifact = {"rows": total, "columns": columns, "empty": total == 0}
    return _format_table(columns, rows, total), artifact


_FUNCTION_RAISED = "user-defined function raised exception"


def _check_statement(query: str) -> str:
    """Return the single statement in `query`, or refuse with a message the model can act on."""
    if len(query) > MAX_QUERY_CHARS:
        raise ToolException(
            f"sql_query refused a query of {len(query)} characters; the limit is "
            f"{MAX_QUERY_CHARS}. Write a shorter query."
        )
    first, rest = _split_first_statement(query)
    if _COMMENTS.sub(" ", rest).strip(" \t\r\n;"):
        raise ToolException(
            f"sql_query refused: only one statement per call is allowed; got '{_shorten(query)}'. "
            "Send each query in its own call."
        )
    match = re.match(r"[A-Za-z]+", first[_LEADING_NOISE.match(first).end() :])
    if not first.strip() or match is None or match.group().upper() not in READ_KEYWORDS:
        raise _read_only_refusal(query)
    return first


def _split_first_statement(query: str) -> tuple[str, str]:
    """(first statement up to its ';', the rest), in one pass: a ';' inside a string, a quoted
    name or a comment does not end the statement. (Asking sqlite3.complete_statement at every ';'
    was quadratic: 400k semicolons in a literal took 40 s.)"""
    closers = {"'": "'", '"': '"', "`": "`", "[": "]"}
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char in closers:
            end = query.find(closers[char], i + 1)
            # '' inside '...' is an escaped quote: find() lands on it and scanning goes on after.
            i = n if end < 0 else end + 1
        elif query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif char == ";":
            return query[: i + 1], query[i + 1 :]
        else:
            i += 1
    return query, ""


def _connect_read_only(
    database: Path,
    authorizer: _DenialRecorder,
    deadline: float | None = None,
    native_search: bool = False,
) -> sqlite3.Connection:
    uri = database.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise ToolException(f"sql_query could not open the database '{database}': {exc}.") from None
    conn.set_authorizer(authorizer)
    # One short query can ask for gigabytes (randomblob(4e8)); no value may exceed 1 MB.
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)

    def refused(hint: str) -> Callable[[str], None]:
        def record(why: str) -> None:
            authorizer.refused = f"{why}. {hint}" if hint else why

        return record

    sql_printf.install(conn, MAX_VALUE_BYTES, refused("Format with round() or smaller widths."))
    sql_linear.install(conn, MAX_VALUE_BYTES, refused(""), native_search=native_search)
    if deadline is None:
        deadline = time.monotonic() + QUERY_TIMEOUT_S
    # A non-zero return aborts the query ("interrupted"); stops runaway cross joins.
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    return conn


def _translate_error(
    exc: sqlite3.Error, query: str, denied: tuple[int, str] | None
) -> ToolException:
    message = str(exc)
    if "not authorized" in message and denied is not None:
        action, subject = _ACTION_NAMES.get(denied[0], f"action {denied[0]}"), denied[1]
        return ToolException(
            f"sql_query refused '{_shorten(query)}': it starts like a read, but to run it "
            f"SQLite needs to {action} '{subject}', and only reading is allowed (no writes, "
            f"PRAGMA, ATTACH or extension loading). {SCHEMA_HINT}."
        )
    if "not authorized" in message:
        return _read_only_refusal(query)
    if "readonly database" in message:
        # A SELECT can hit this too: the file may need recovery or be in WAL mode in a folder
        # planexec cannot write to. Say so rather than blaming the query.
        return ToolException(
            f"sql_query could not read the database for '{_shorten(query)}': SQLite answered "
            f"'{message}'. The query is a read, but the database needs write access to open "
            "(a journal to recover, or WAL mode). Ask the operator to check the database file."
        )
    if "one statement at a time" in message:
        return ToolException(
            f"sql_query refused: only one statement per call is allowed; got '{_shorten(query)}'."
        )
    if "interrupted" in message:
        return ToolException(
            f"sql_query stopped '{_shorten(query)}' after {QUERY_TIMEOUT_S:g} s. "
            "Add a WHERE clause or LIMIT, or avoid large joins."
        )
    return ToolException(f"sql_query failed on '{_shorten(query)}': {message}. {SCHEMA_HINT}.")


def _read_only_refusal(query: str) -> ToolException:
    return ToolException(
        f"sql_query refused: only read queries (SELECT/WITH) are allowed; got '{_shorten(query)}'"
    )


def _format_table(columns: list[str], rows: list[tuple[Any, ...]], total: int) -> str:
    if total == 0:
        return f"Query returned 0 rows (columns: {', '.join(columns)})."
    lines = [" | ".join(_format_cell(c) for c in columns)]
    size = len(lines[0])
    shown = 0
    for row in rows:
        line = " | ".join(_format_cell(v) for v in row)
        if size + len(line) + 1 > MAX_OUTPUT_CHARS:
            break
        lines.append(line)
        size += len(line) + 1
        shown += 1
    if total > shown:
        lines.append(
            f"... {total - shown} more rows not shown ({total} rows in total; at most "
            f"{MAX_ROWS_SHOWN} rows and {MAX_OUTPUT_CHARS} characters are shown). "
            "Add WHERE/LIMIT, fewer columns, or aggregate to see the rest."
        )
    return "\n".join(lines)


def _format_cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def _shorten(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SqlQueryArgs(BaseModel):
    query: str = Field(
        description="One SQLite SELECT (or WITH ... SELECT) statement, e.g. "
        '"SELECT name, total FROM orders ORDER BY total DESC LIMIT 10".'
    )


def make_sql_tools(settings: ToolSettings) -> list[BaseTool]:
    """Build sql_query bound to `settings.sql_database`."""

    def sql_query(query: str) -> tuple[str, dict[str, Any]]:
        return run_query(settings, query)

    return [
        StructuredTool.from_function(
            func=sql_query,
            name="sql_query",
            description=(
                "Run one read-only SQLite query (SELECT or WITH) against the configured database "
                "and return the rows as a table: a header line of column names separated by ' | ', "
                f"then one line per row (at most {MAX_ROWS_SHOWN} shown). Writes, PRAGMA, ATTACH "
                "and multiple statements are refused. To discover the schema, run: "
                "SELECT name, sql FROM sqlite_master WHERE type='table'."
            ),
            args_schema=SqlQueryArgs,
            response_format="content_and_artifact",
        )
    ]
