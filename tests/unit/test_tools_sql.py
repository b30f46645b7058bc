import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import ToolException

from tools import sql as sql_mod
from tools.settings import ToolSettings
from tools.sql import MAX_CELL_CHARS, MAX_OUTPUT_CHARS, make_sql_tools, read_only_authorizer


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total REAL);
        INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');
        INSERT INTO orders VALUES (10, 1, 9.5), (11, 1, 20.0), (12, 2, 5.25);
        CREATE TABLE numbers (n INTEGER);
        """
    )
    conn.executemany("INSERT INTO numbers VALUES (?)", [(i,) for i in range(250)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def sql_query(tmp_path: Path, database: Path):
    (tool,) = make_sql_tools(ToolSettings(workspace=tmp_path, sql_database=database))
    return tool


def count_orders(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM orders").fetchone()[0]


def test_select_with_join(sql_query) -> None:
    text = sql_query.invoke(
        {
            "query": "SELECT c.name, sum(o.total) AS spent FROM customers c "
            "JOIN orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY c.name"
        }
    )
    assert text == "name | spent\nAda | 29.5\nGrace | 5.25"


def test_tool_call_returns_artifact(sql_query) -> None:
    message = sql_query.invoke(
        {
            "type": "tool_call",
            "id": "1",
            "name": "sql_query",
            "args": {"query": "SELECT id, total FROM orders WHERE customer_id = 1"},
        }
    )
    assert isinstance(message, ToolMessage)
    assert message.content == "id | total\n10 | 9.5\n11 | 20.0"
    assert message.artifact == {"rows": 2, "columns": ["id", "total"], "empty": False}


def test_empty_result_artifact(sql_query) -> None:
    message = sql_query.invoke(
        {
            "type": "tool_call",
            "id": "1",
            "name": "sql_query",
            "args": {"query": "SELECT id, total FROM orders WHERE total > 1000"},
        }
    )
    assert message.content == "Query returned 0 rows (columns: id, total)."
    assert message.artifact["empty"] is True
    assert message.artifact["rows"] == 0
    assert message.artifact["columns"] == ["id", "total"]


def test_output_is_capped_at_200_rows(sql_query) -> None:
    text = sql_query.invoke({"query": "SELECT n FROM numbers ORDER BY n"})
    lines = text.splitlines()
    assert lines[0] == "n"
    assert lines[1] == "0" and lines[200] == "199"
    assert "50 more rows not shown (250 rows in total;" in lines[201]
    assert len(lines) == 202


def test_schema_is_readable(sql_query) -> None:
    text = sql_query.invoke({"query": "SELECT name FROM sqlite_master WHERE type='table'"})
    assert text.splitlines() == ["name", "customers", "orders", "numbers"]
    text = sql_query.invoke({"query": "SELECT count(*) AS n FROM sqlite_schema"})
    assert text == "n\n3"


def test_with_recursive_is_allowed(sql_query) -> None:
    query = (
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 3) "
        "SELECT x FROM r"
    )
    assert sql_query.invoke({"query": query}) == "x\n1\n2\n3"


def test_trailing_semicolon_and_comments_are_fine(sql_query) -> None:
    text = sql_query.invoke({"query": "-- count\nSELECT count(*) AS n FROM orders; -- done\n"})
    assert text == "n\n3"


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO orders VALUES (99, 1, 1.0)",
        "UPDATE orders SET total = 0",
        "DELETE FROM orders",
        "DROP TABLE orders",
        "CREATE TABLE evil (x)",
        "ATTACH DATABASE 'other.db' AS other",
        "PRAGMA journal_mode=WAL",
        "VACUUM INTO 'copy.db'",
        "REPLACE INTO orders VALUES (10, 1, 0)",
        "BEGIN",
        "",
    ],
)
def test_refuses_writes(sql_query, database: Path, query: str) -> None:
    with pytest.raises(ToolException) as info:
        sql_query.invoke({"query": query})
    assert str(info.value) == (
        f"sql_query refused: only read queries (SELECT/WITH) are allowed; got '{query}'"
    )
    assert count_orders(database) == 3


@pytest.mark.parametrize(
    "query",
    [
        # These start with WITH/SELECT, so only the authorizer stops them.
        "WITH doomed AS (SELECT 10 AS id) DELETE FROM orders WHERE id IN (SELECT id FROM doomed)",
        "WITH x AS (SELECT 1) INSERT INTO orders VALUES (99, 1, 1.0)",
        "SELECT load_extension('evil')",
    ],
)
def test_authorizer_blocks_writes_disguised_as_reads(sql_query, database: Path, query) -> None:
    with pytest.raises(ToolException, match=r"it starts like a read, but .* only reading is"):
        sql_query.invoke({"query": query})
    assert count_orders(database) == 3


@pytest.mark.parametrize(
    ("query", "needed"),
    [
        ("WITH d AS (SELECT 10 AS id) DELETE FROM orders WHERE id IN d", "delete 'orders'"),
        ("SELECT load_extension('evil')", "function 'load_extension'"),
        ("SELECT hex(fts3_tokenizer('simple'))", "function 'fts3_tokenizer'"),
        ("SELECT * FROM pragma_table_info('orders')", "update 'sqlite_master'"),
    ],
)
def test_a_refused_read_says_what_the_database_refused(sql_query, query: str, needed: str) -> None:
    with pytest.raises(ToolException) as info:
        sql_query.invoke({"query": query})
    assert f"SQLite needs to {needed}" in str(info.value)
    assert "only read queries (SELECT/WITH)" not in str(info.value)


def test_total_output_is_capped(sql_query) -> None:
    # 200 rows of 190 characters each would be 38 000 characters.
    query = "SELECT printf('%0190d', n) AS wide FROM numbers"
    text = sql_query.invoke({"query": query})
    assert len(text) <= MAX_OUTPUT_CHARS + 300
    shown = len(text.splitlines()) - 2
    assert 0 < shown < 200
    assert text.endswith("Add WHERE/LIMIT, fewer columns, or aggregate to see the rest.")
    assert f"{250 - shown} more rows not shown (250 rows in total" in text


def test_long_queries_are_refused_before_parsing(sql_query) -> None:
    with pytest.raises(ToolException, match="a query of 400014 characters; the limit is 20000"):
        sql_query.invoke({"query": "SELECT '" + ";" * 400_000 + "' AS s"})


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("SELECT length('" + ";" * 19_000 + "') AS s", "19000"),
        ("SELECT 'it''s; fine' AS s", "it's; fine"),
        ('SELECT 1 AS "a;b"', "1"),
        ("SELECT 2 AS [x;y] -- trailing; comment", "2"),
        ("SELECT /* ; */ 3 AS s;", "3"),
    ],
    ids=["19k-semicolons", "escaped-quote", "quoted-name", "bracket-name", "comment"],
)
def test_semicolons_in_literals_names_and_comments(sql_query, query: str, value: str) -> None:
    assert sql_query.invoke({"query": query}).splitlines()[1] == value


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 2",
        "DELETE FROM t",
        "DROP TABLE t",
        "CREATE TABLE u (b)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA journal_mode=WAL",
        "PRAGMA table_info(t)",
        "BEGIN",
        "SAVEPOINT s",
        "RELEASE s",
        "DETACH DATABASE other",
        "CREATE TEMP TABLE u (b)",
        "CREATE TEMP VIEW v AS SELECT a FROM t",
        "CREATE VIEW v AS SELECT a FROM t",
        "CREATE INDEX i ON t (a)",
        "CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT 1; END",
        "ALTER TABLE t ADD COLUMN b",
        "ANALYZE t",
    ],
)
def test_authorizer_alone_denies_writes(statement: str) -> None:
    # A writable connection: proves the authorizer itself (not mode=ro) does the denying.
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a)")
    conn.set_authorizer(read_only_authorizer)
    with pytest.raises(sqlite3.DatabaseError, match="not authorized"):
        conn.execute(statement)
    assert conn.execute("SELECT a FROM t").fetchall() == []


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; DELETE FROM orders",
        "SELECT 1; SELECT 2",
        "SELECT ';' AS s; DROP TABLE orders;",
    ],
)
def test_refuses_multiple_statements(sql_query, database: Path, query: str) -> None:
    with pytest.raises(ToolException) as info:
        sql_query.invoke({"query": query})
    assert str(info.value).startswith(
        f"sql_query refused: only one statement per call is allowed; got '{query}'"
    )
    assert count_orders(database) == 3


def test_semicolon_inside_string_is_one_statement(sql_query) -> None:
    assert sql_query.invoke({"query": "SELECT 'a;b' AS s"}) == "s\na;b"


def test_no_database_configured(tmp_path: Path) -> None:
    (tool,) = make_sql_tools(ToolSettings(workspace=tmp_path))
    with pytest.raises(ToolException) as info:
        tool.invoke({"query": "SELECT 1"})
    assert str(info.value) == "sql_query: no database is configured (set sql_database)"


def test_missing_database_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    (tool,) = make_sql_tools(ToolSettings(workspace=tmp_path, sql_database=missing))
    with pytest.raises(ToolException, match="does not exist") as info:
        tool.invoke({"query": "SELECT 1"})
    assert str(missing) in str(info.value)
    assert not missing.exists()  # opening read-only must not create it


def test_sql_error_points_to_schema(sql_query) -> None:
    with pytest.raises(ToolException) as info:
        sql_query.invoke({"query": "SELECT * FROM nonexistent"})
    message = str(info.value)
    assert "no such table: nonexistent" in message
    assert "sqlite_master" in message


def test_null_and_blob_cells(sql_query) -> None:
    text = sql_query.invoke({"query": "SELECT NULL AS a, x'0102' AS b, 'x\ny' AS c"})
    assert text == "a | b | c\nNULL | <2 bytes> | x\\ny"


def test_a_huge_value_is_refused_not_allocated(sql_query) -> None:
    with pytest.raises(ToolException, match="too big"):
        sql_query.invoke({"query": "SELECT randomblob(400000000)"})


def test_a_runaway_query_is_stopped_at_the_time_limit(
    sql_query, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model can write a query that runs for hours; the progress handler ends it."""
    monkeypatch.setattr(sql_mod, "QUERY_TIMEOUT_S", 0.05)
    query = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "
        "SELECT count(*) FROM c"
    )
    with pytest.raises(ToolException) as info:
        sql_query.invoke({"query": query})
    assert str(info.value).startswith("sql_query stopped 'WITH RECURSIVE c(x)")
    assert "after 0.05 s. Add a WHERE clause or LIMIT" in str(info.value)


def test_a_function_that_loops_inside_one_call_is_stopped_with_its_process(
    sql_query, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite checks the time limit between instructions only, and GLOB and LIKE are quadratic
    inside one: this took 18 s, and a 1 MB LIKE 435 s, against a 10 s limit. The query's process
    is killed at the limit."""
    monkeypatch.setattr(sql_mod, "QUERY_TIMEOUT_S", 1.0)
    started = time.monotonic()
    for query in (
        "SELECT hex(zeroblob(100000)) GLOB '*' || hex(zeroblob(10000)) || '1'",
        "SELECT hex(zeroblob(100000)) LIKE '%' || hex(zeroblob(10000)) || '1'",
    ):
        with pytest.raises(ToolException, match=r"^sql_query stopped 'SELECT hex.* after 1 s\."):
            sql_query.invoke({"query": query})
    assert time.monotonic() - started < 2 * (1.0 + sql_mod.CHILD_START_S) + 4  # not 18 s


def test_a_result_too_big_for_memory_is_refused_not_read(sql_query) -> None:
    """1,500 columns of 1 MB each in one row: read into Python, 1.5 GB (2,000 columns fit in a
    10 KB query). The query's process has 1 GB; the model is told what to do instead."""
    columns = ", ".join(["a"] * 1500)
    query = f"WITH d(a) AS (SELECT hex(zeroblob(499990))) SELECT {columns} FROM d"
    with pytest.raises(ToolException, match="needed more than 1024 MB of memory. Select fewer"):
        sql_query.invoke({"query": query})
    assert sql_query.invoke({"query": "SELECT 1 AS one"}) == "one\n1", "the next query runs"


def test_a_long_cell_is_cut_with_an_ellipsis(sql_query) -> None:
    """One wide value must not fill the model's context on its own."""
    text = sql_query.invoke({"query": "SELECT printf('%0500d', 7) AS wide"})
    assert text == "wide\n" + "0" * (MAX_CELL_CHARS - 3) + "..."


@pytest.mark.parametrize(
    "query",
    [
        "SELECT printf('%.*c', 2147483647, 'x')",
        "SELECT printf('%.*c', '2147483647 rows', 'x')",  # SQLite reads the number's prefix
        "SELECT format('%*d', -2000000000, 1)",
        "SELECT printf('%d %.99999999999999999999c', 1, 'x')",
        "SELECT printf(name || '%5000s', 'x') FROM customers",
        # The arguments a check reads must be the ones SQLite reads: after a conversion (its
        # argument taken), after %n (none taken), and a width that is the last argument.
        "SELECT printf('%d%.*c', 1, 2147483647, 'x')",
        "SELECT printf('%n%.*c', 2147483647, 'x')",
        "SELECT printf('%*d', 2000000000)",
    ],
)
def test_printf_cannot_loop_inside_one_call_past_the_time_limit(sql_query, query: str) -> None:
    """The progress handler never runs inside a function call, and printf pads or repeats in
    one: the first query ran 13 s against a 10 s limit, at full width a query of them runs for
    hours. Widths and precisions above 1000 are refused, with the reason."""
    started = time.monotonic()
    with pytest.raises(ToolException, match="above 1000. Format with round"):
        sql_query.invoke({"query": query})
    assert time.monotonic() - started < 2.0


def test_printf_still_formats_as_sqlite_does(sql_query) -> None:
    query = (
        "SELECT printf('%.2f|%-5d|%*d|%.3c|%,d|%q|%%|%n', total, orders.id, 4, 7, 'ab', 1234567, "
        "'it''s') AS p, format('%s=%d', name, customers.id) AS f, printf(NULL) AS n "
        "FROM orders JOIN customers ON customers.id = orders.customer_id WHERE orders.id = 10"
    )
    text = sql_query.invoke({"query": query})
    assert text == "p | f | n\n9.50|10   |   7|aaa|1,234,567|it''s|%| | Ada=1 | NULL"


def test_one_row_past_the_cap_is_said_too(sql_query) -> None:
    """201 rows: the model must not take the 200 shown for the whole result."""
    text = sql_query.invoke({"query": "SELECT n FROM numbers WHERE n <= 200 ORDER BY n"})
    assert "1 more rows not shown (201 rows in total;" in text.splitlines()[-1]


def test_the_file_is_opened_read_only_even_without_the_authorizer(database: Path) -> None:
    """The second of the three layers, on its own: SQLite itself refuses the write."""
    from tools.sql_engine import DenialRecorder, connect_read_only

    allow_all = DenialRecorder()
    conn = connect_read_only(database, allow_all, deadline=time.monotonic() + 10)
    conn.set_authorizer(None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly database"):
            conn.execute("INSERT INTO orders VALUES (99, 1, 1.0)")
    finally:
        conn.close()
    assert count_orders(database) == 3


def test_printf_output_is_held_to_the_length_limit() -> None:
    """Every width may be under 1000 and a format may hold thousands of them: the private
    connection that formats has the tool's length limit too."""
    import sqlite3

    from tools.sql_printf import install

    conn = sqlite3.connect(":memory:")
    install(conn, 1000, lambda why: None)
    assert len(conn.execute("SELECT printf('%500c%499c', 'a', 'b')").fetchone()[0]) == 999
    # SQLite's printf gives NULL for output past the length limit.
    assert conn.execute("SELECT printf('%1000c%1000c', 'a', 'b')").fetchone()[0] is None


LONG_A = "replace(hex(zeroblob({n})), '0', 'a')"  # 2n characters 'a', made inside SQLite


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT instr({LONG_A.format(n=499000)}, {LONG_A.format(n=200000)} || 'b') AS i",
        f"SELECT length(replace({LONG_A.format(n=499000)}, {LONG_A.format(n=200000)} || 'b', 'x'))"
        " AS i",
        f"SELECT instr(CAST({LONG_A.format(n=499000)} AS BLOB), "
        f"CAST({LONG_A.format(n=200000)} || 'b' AS BLOB)) AS i",
        # Every character of the text is in the set, found at its end (all trimmed): 11.5 s
        # at a tenth of these sizes.
        f"SELECT length(ltrim({LONG_A.format(n=499000)}, "
        f"replace(hex(zeroblob(25000)), '0', 'b') || 'a')) AS i",
        f"SELECT length(trim({LONG_A.format(n=499000)}, "
        f"replace(hex(zeroblob(25000)), '0', 'b') || 'c')) AS i",
        # A blob, or a number as the replacement, went to SQLite's own loops (5.9-12.7 s).
        f"SELECT length(ltrim(CAST({LONG_A.format(n=499000)} AS BLOB), "
        f"replace(hex(zeroblob(25000)), '0', 'b') || 'a')) AS i",
        f"SELECT instr(CAST({LONG_A.format(n=499000)} AS BLOB), "
        f"{LONG_A.format(n=200000)} || 'b') AS i",
        f"SELECT length(replace(CAST({LONG_A.format(n=499000)} AS BLOB), "
        f"{LONG_A.format(n=200000)} || 'b', '')) AS i",
        f"SELECT length(replace({LONG_A.format(n=499000)}, {LONG_A.format(n=200000)} || 'b', 1))"
        " AS i",
    ],
)
def test_string_functions_of_long_values_take_linear_time(sql_query, query: str) -> None:
    """SQLite loops inside one call, where the progress handler never runs: the instr and
    replace took 7-8 s of one query's 10 s, the trims minutes (tools/sql_linear.py). The
    answers stay SQLite's: no match (0), or the unchanged length."""
    started = time.monotonic()
    text = sql_query.invoke({"query": query})
    # Linear: about 0.3 s with the query's process start; quadratic: 7 s and more. The bound
    # sits between, with room for a loaded machine (2.0 s failed under a load of 7).
    assert time.monotonic() - started < 5.0
    assert text in ("i\n0", "i\n998000")


def test_the_linear_string_functions_answer_as_sqlites_own() -> None:
    """The same answers as SQLite's built-in functions for every kind of value Python can hand
    them: texts beyond ASCII, blobs (valid UTF-8 or not, with NULs), integers, reals in SQLite's
    own text form, NULLs, empty and NUL-led patterns. Where the answer would be text that is
    not UTF-8 (which a Python function cannot return) ours refuses, and SQLite's is indeed not
    UTF-8."""
    from tools import sql_linear

    values = [
        "héllo wörld", "ö", "wö", "", "l", "lo", None, 3.5, 1e20, 12, -7, ".", "5", "e+",
        b"\x00\x01\x02\x01", b"\x01", b"", b"\xff\xfe", b"a\xc3\xa9b", b"\xa9b", b"\x00a",
        "ü€𝄞ab€", "€", "𝄞a", b"\x02\x01", "HÉLLO", "a\x00b", "\x00",
    ]  # fmt: skip
    builtin = sqlite3.connect(":memory:")
    ours = sqlite3.connect(":memory:")
    sql_linear.install(ours, 1_000_000, on_refused=lambda why: None)
    builtin.text_factory = ours.text_factory = bytes  # results as SQLite made them

    def utf8(value: object) -> bool:
        try:
            return not isinstance(value, bytes) or bool(value.decode()) or True
        except UnicodeDecodeError:
            return False

    def refused_or_same(query: str, args: tuple) -> None:
        want = builtin.execute(query, args).fetchone()
        try:
            got = ours.execute(query, args).fetchone()
        except sqlite3.OperationalError:
            assert want[1] == b"text" and not utf8(want[0]), ("refused", query, args, want)
            return
        assert got == want, (query, args)

    for x in values:
        for y in values:
            refused_or_same("SELECT instr(?, ?), typeof(instr(?, ?))", (x, y, x, y))
            for trim in ("trim", "ltrim", "rtrim"):
                refused_or_same(f"SELECT {trim}(?, ?), typeof({trim}(?, ?))", (x, y, x, y))
            for z in ("€", "", 7, 2.5, None, b"\x03", b"\xff"):
                query = "SELECT replace(?, ?, ?), typeof(replace(?, ?, ?))"
                refused_or_same(query, (x, y, z, x, y, z))


def test_text_that_is_not_utf8_in_the_database_is_searched_by_sqlite_itself(
    tmp_path: Path,
) -> None:
    """Python cannot hand text that is not UTF-8 to a function: the query failed where SQLite's
    own instr counted the row. It runs again with SQLite's instr and replace; a trim of such
    text is refused, saying why."""
    path = tmp_path / "odd.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE t (name TEXT)")
        conn.execute("INSERT INTO t VALUES ('alpha'), (CAST(x'416cff70' AS TEXT)), ('beta')")
    (tool,) = make_sql_tools(ToolSettings(workspace=tmp_path, sql_database=path))
    assert tool.invoke({"query": "SELECT count(*) AS n FROM t WHERE instr(name, 'a') > 0"}) == (
        "n\n2"
    )
    query = "SELECT count(*) AS n FROM t WHERE replace(name, 'l', 'L') <> name"
    assert tool.invoke({"query": query}) == "n\n2"
    with pytest.raises(ToolException, match="a trim was given text that is not valid UTF-8"):
        tool.invoke({"query": "SELECT count(*) FROM t WHERE trim(name, 'a') <> ''"})


def test_a_replace_too_big_for_the_limit_is_refused_before_it_is_built(sql_query) -> None:
    """Each of 400,000 characters replaced by 500,000: Python's replace would build 200 GB before
    SQLite's length limit saw the value. Refused from its size, saying why."""
    query = f"SELECT length(replace({LONG_A.format(n=200000)}, 'a', {LONG_A.format(n=250000)}))"
    started = time.monotonic()
    with pytest.raises(ToolException, match="replace\\(\\) would make a value of over 1,000,000"):
        sql_query.invoke({"query": query})
    assert time.monotonic() - started < 2.0


def test_a_query_process_that_dies_without_answering_is_said_plainly(
    sql_query, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query's process may die (the kernel's OOM killer, a crash in SQLite): the step is
    told so, with the query, not handed a JSON error or a traceback."""
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    monkeypatch.setattr(sql_mod, "_CHILD", killed)
    with pytest.raises(ToolException, match=r"^sql_query's process for 'SELECT 1' was ended by "
                       r"signal 9$"):  # fmt: skip
        sql_query.invoke({"query": "SELECT 1"})
    monkeypatch.setattr(sql_mod, "_CHILD", "import sys; sys.exit('broken install')")
    with pytest.raises(ToolException, match=r"failed \(1\): broken install$"):
        sql_query.invoke({"query": "SELECT 1"})
