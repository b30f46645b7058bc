"""sql_query: read-only SQL over one SQLite file.

Three layers, because each one alone has gaps:
1. a text check (one statement, starting with SELECT/WITH) for clear refusal messages;
2. the file is opened with `mode=ro`, so SQLite itself refuses writes to it;
3. an authorizer that only allows what a SELECT needs. This is the real guard:
   `mode=ro` alone still allows ATTACH (and so `VACUUM INTO`, which writes a new
   file), and `WITH ... DELETE` passes the text check.

Time and size: the query runs in a child process (tools/sql_engine.py) that is killed at
QUERY_TIMEOUT_S whatever it is doing and whose memory is capped: SQLite checks its own time
limit only between instructions, and LIKE, GLOB and other functions loop for minutes inside one.
Inside the child, a progress handler still ends runaway joins with a clear message, no value may
exceed 1 MB, printf/format have their widths bounded (tools/sql_printf.py) and instr, replace
and the trims take linear time (tools/sql_linear.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools.settings import ToolSettings
from tools.sql_engine import (
    MAX_CELL_CHARS,
    MAX_OUTPUT_CHARS,
    MAX_ROWS_SHOWN,
    out_of_memory,
    read_only_authorizer,
    read_only_refusal,
    shorten,
    stopped,
)

__all__ = ["MAX_CELL_CHARS", "MAX_OUTPUT_CHARS", "make_sql_tools", "read_only_authorizer"]

# A query longer than this is refused before any parsing: splitting and checking stay cheap.
MAX_QUERY_CHARS = 20_000
QUERY_TIMEOUT_S = 10.0
# The child's own start (an interpreter and sqlite3, about 50 ms) is not the query's time.
CHILD_START_S = 2.0
READ_KEYWORDS = frozenset({"SELECT", "WITH"})
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?(?:\*/|$)", re.S)
# The package's folder goes first on the child's path: it runs the same code as this process.
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from tools.sql_engine import serve; serve()"
_PROJECT = str(Path(__file__).resolve().parents[1])


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
    request = {
        "database": str(database),
        "statement": statement,
        "query": query,
        "timeout_s": QUERY_TIMEOUT_S,
    }
    try:
        done = subprocess.run(
            # -I -S: no PYTHON* variables, no site-packages (the engine is stdlib only): a
            # start of tens of milliseconds
            [sys.executable, "-I", "-S", "-c", _CHILD, _PROJECT],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT_S + CHILD_START_S,  # then killed, whatever it is doing
        )
    except subprocess.TimeoutExpired:
        raise ToolException(stopped(query, QUERY_TIMEOUT_S)) from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        raise ToolException(_child_failure(query, done)) from None
    if "error" in answer:
        raise ToolException(answer["error"])
    return answer["text"], answer["artifact"]


def _child_failure(query: str, done: subprocess.CompletedProcess[str]) -> str:
    """Why the child gave no answer: its memory cap, its CPU backstop, or something else."""
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if "MemoryError" in done.stderr:
        return out_of_memory(query)
    if done.returncode < 0:
        return f"sql_query's process for '{shorten(query)}' was ended by signal {-done.returncode}"
    return f"sql_query's process for '{shorten(query)}' failed ({done.returncode}): {last[:300]}"


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
            f"sql_query refused: only one statement per call is allowed; got '{shorten(query)}'. "
            "Send each query in its own call."
        )
    match = re.match(r"[A-Za-z]+", first[_LEADING_NOISE.match(first).end() :])
    if not first.strip() or match is None or match.group().upper() not in READ_KEYWORDS:
        raise ToolException(read_only_refusal(query))
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
