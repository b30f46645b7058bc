"""Database URLs to a LangGraph checkpointer and store.

    memory://                         in-process only (tests, throwaway runs)
    path/to/file.sqlite               SQLite (the default: ./.planexec/planexec.sqlite)
    sqlite:///relative/path.sqlite    the same, as a URL; SQLAlchemy's convention: three slashes
    sqlite:////absolute/path.sqlite   then the path, so an absolute path has four
    postgresql://user@host:5432/db    PostgreSQL (or postgres://), for servers and several workers

Anything else that looks like a URL (`mysql://...`) is refused rather than taken as a file name.

The checkpointer holds the run's state between nodes; the store journals each finished step
(graphs/journal.py). Both live in the same database.

A database is checked before it is written to: an SQLite file that holds any table planexec
did not create, or a table of planexec's name with other columns, is refused untouched (no WAL
switch, no new tables). In PostgreSQL a schema may hold other applications' tables (workers keep
their queue there), so only tables of planexec's names are checked. `open_persistence(url,
create=False)` (for `runs`, `show`, `report`) never creates a file or folder: a missing SQLite
file raises NoDatabase.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

if TYPE_CHECKING:  # compiled on first use: `runs` and `show` do without it
    from langgraph.graph.state import CompiledStateGraph

DEFAULT_DB = ".planexec/planexec.sqlite"


ACCEPTED_FORMS = (
    "memory://, a SQLite file path, sqlite:///relative/path, sqlite:////absolute/path, "
    "or postgresql://user@host:5432/db"
)


class DatabaseURLError(ValueError):
    """A --db / PLANEXEC_DB value that cannot be opened."""


class NoDatabase(DatabaseURLError):
    """The SQLite file does not exist (and was not to be created)."""

    def __init__(self, path: Path):
        super().__init__(f"no runs yet at {path} (the database file does not exist)")
        self.path = path


class ForeignDatabase(DatabaseURLError):
    """The database holds tables planexec did not create; it is left as it was."""


@dataclass
class Persistence:
    checkpointer: BaseCheckpointSaver
    store: BaseStore
    url: str
    """The URL as given (workers open their lock connection with it)."""

    @cached_property
    def graph(self) -> CompiledStateGraph:
        """The plan-and-execute graph on this checkpointer and store, compiled once: listing
        200 runs compiled it 200 times (2 ms each) before."""
        from graphs.plan_execute import build_graph  # the graph imports the app, not this

        return build_graph(checkpointer=self.checkpointer, store=self.store)

    @property
    def shown(self) -> str:
        """The URL for messages: never with a password."""
        return redact(self.url)


def write_problem(persistence: Persistence) -> str:
    """Why this process cannot write the SQLite database ("" when it can, and for other kinds):
    a run resumed from a read-only file read its checkpoint, started, and failed at its first
    write. SQLite writes the file, its -wal and -shm files, and makes those in its folder."""
    if persistence.url.startswith(("memory://", "postgresql://", "postgres://")):
        return ""
    from app.runs.worker import lock_dir  # the run locks' folder, beside the file

    path = Path(persistence.url)
    companions = [Path(f"{path}-wal"), Path(f"{path}-shm"), lock_dir(str(path))]
    for file in (path, *companions):
        if file.exists() and not os.access(file, os.W_OK):
            return f"{str(file)!r} is read-only to this user; make it writable"
    folder = path.parent
    if not all(f.exists() for f in companions) and not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the database's folder {str(folder)!r} is read-only to this user (SQLite makes its "
            "-wal and -shm files there, planexec its .locks folder); make it writable"
        )
    return ""


def default_db_url() -> str:
    return os.environ.get("PLANEXEC_DB") or DEFAULT_DB


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")


def parse_url(url: str) -> tuple[str, str]:
    """("memory" | "postgres" | "sqlite", the URL or the SQLite path); DatabaseURLError for
    anything else."""
    if url.startswith("memory://"):
        return "memory", url
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres", url
    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            raise DatabaseURLError(
                f"cannot read the SQLite URL {url!r}: write sqlite:///relative/path or "
                "sqlite:////absolute/path (three slashes, then the path)"
            )
        return "sqlite", url.removeprefix("sqlite:///")
    scheme = _SCHEME.match(url)
    if "://" in url or (scheme and len(scheme.group(1)) > 1):  # not a Windows drive "C:"
        raise DatabaseURLError(
            f"unsupported database {redact(url)!r}: --db / PLANEXEC_DB takes {ACCEPTED_FORMS}"
        )
    if not url.strip():
        raise DatabaseURLError(f"the database is empty: --db / PLANEXEC_DB takes {ACCEPTED_FORMS}")
    return "sqlite", url


@contextmanager
def open_persistence(url: str | None = None, create: bool = True) -> Iterator[Persistence]:
    """Open the checkpointer and store for `url`, creating tables on first use.

    With `create=False` a missing SQLite file raises NoDatabase instead of being created."""
    kind, target = parse_url(url or default_db_url())
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.store.memory import InMemoryStore

        yield Persistence(InMemorySaver(), InMemoryStore(), target)
    elif kind == "postgres":
        with _postgres(target) as persistence:
            yield persistence
    else:
        with _sqlite(Path(target).expanduser(), create) as persistence:
            yield persistence


@functools.cache
def _sqlite_tables() -> dict[str, set[str]]:
    """planexec's SQLite tables and their columns, as the installed savers create them."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    conn = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        SqliteSaver(conn).setup()
        SqliteStore(conn).setup()
        from app.runs.local_queue import SCHEMA  # the workers' queue table (app/runs/worker.py)

        conn.executescript(SCHEMA)
        return _tables_of(conn)
    finally:
        conn.close()


def _tables_of(conn: sqlite3.Connection) -> dict[str, set[str]]:
    names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {
        n: {row[1] for row in conn.execute("SELECT * FROM pragma_table_info(?)", (n,))}
        for n in names
    }


def _check_sqlite(path: Path) -> None:
    """Refuse a file that is not SQLite or holds tables planexec did not create, reading it
    only (a read-only connection: no journal switch, nothing created)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = _tables_of(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseURLError(
            f"cannot read {str(path)!r} as an SQLite database ({exc}); give another --db"
        ) from exc
    ours = _sqlite_tables()
    foreign = sorted(
        name
        for name, columns in found.items()
        if not name.startswith("sqlite_") and not columns <= ours.get(name, set())
    )
    if foreign:
        raise ForeignDatabase(
            f"{str(path)!r} holds tables planexec did not create ({', '.join(foreign)}); it was "
            "left unchanged. Give --db a new file or one planexec made"
        )


@contextmanager
def _sqlite(path: Path, create: bool = True) -> Iterator[Persistence]:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    if path.is_dir():
        raise DatabaseURLError(f"the database {str(path)!r} is a folder; give a file path")
    if path.exists():
        _check_sqlite(path)
    elif not create:
        raise NoDatabase(path)
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DatabaseURLError(
            f"cannot make the database {str(path)!r}: {str(blocking)!r} is a file, not a folder"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        saver_conn = sqlite3.connect(str(path), check_same_thread=False)
        # WAL lets the store's connection write while the checkpointer's reads, and survives
        # kill -9 like the default journal does.
        saver_conn.execute("PRAGMA journal_mode=WAL")
        store_conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseURLError(f"cannot open SQLite database {str(path)!r}: {exc}") from exc
    try:
        checkpointer, store = SqliteSaver(saver_conn), SqliteStore(store_conn)
        checkpointer.setup()
        store.setup()
        yield Persistence(checkpointer, store, str(path))
    finally:
        store_conn.close()
        saver_conn.close()


CONNECT_TIMEOUT_S = 10


def with_connect_timeout(url: str) -> str:
    """`url` with libpq's `connect_timeout` when it sets none: without one, a server that takes
    the connection and never answers kept every command waiting for good."""
    import psycopg.conninfo

    if "connect_timeout" in psycopg.conninfo.conninfo_to_dict(url):
        return url
    return psycopg.conninfo.make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_S)


@contextmanager
def _postgres(url: str) -> Iterator[Persistence]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore

    with ExitStack() as stack:
        # Only opening and setup are wrapped: an error during the run is not "cannot connect".
        try:
            conninfo = with_connect_timeout(url)
            checkpointer = stack.enter_context(PostgresSaver.from_conn_string(conninfo))
            store = stack.enter_context(PostgresStore.from_conn_string(conninfo))
            # setup() reads the schema version, then migrates, with no lock: two processes
            # starting at once on a new database both migrate and one fails on a duplicate key.
            with psycopg.connect(conninfo, autocommit=True) as guard:
                _take_setup_turn(guard)
                _check_postgres(guard, url)
                checkpointer.setup()
                store.setup()
        except psycopg.OperationalError as exc:
            raise DatabaseURLError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
        except psycopg.Error as exc:  # a missing schema, no CREATE privilege, ...
            raise DatabaseURLError(f"cannot set up PostgreSQL at {redact(url)}: {exc}") from exc
        yield Persistence(checkpointer, store, url)


# Columns every version of langgraph's Postgres saver and store has in its tables.
_POSTGRES_TABLES = {
    "checkpoints": {"thread_id", "checkpoint_ns", "checkpoint_id", "checkpoint", "metadata"},
    "checkpoint_blobs": {"thread_id", "checkpoint_ns", "channel", "version", "blob"},
    "checkpoint_writes": {"thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"},
    "checkpoint_migrations": {"v"},
    "store": {"prefix", "key", "value"},
    "store_migrations": {"v"},
}


def _check_postgres(conn: Any, url: str) -> None:
    """Refuse a schema whose tables of planexec's names are someone else's (other columns)."""
    rows = conn.execute(
        "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY(%s) GROUP BY table_name",
        (list(_POSTGRES_TABLES),),
    ).fetchall()
    foreign = sorted(name for name, cols in rows if not _POSTGRES_TABLES[name] <= set(cols))
    if foreign:
        raise ForeignDatabase(
            f"PostgreSQL at {redact(url)} holds tables planexec did not create "
            f"({', '.join(foreign)}); it was left unchanged. Use another database or schema"
        )


def _take_setup_turn(conn: Any) -> None:
    """Wait for the setup lock (released when `conn` closes), in waits of 0.1 s.

    Not one long wait: a statement blocked on the lock holds a snapshot, and the holder's
    setup() runs CREATE INDEX CONCURRENTLY, which waits for every older snapshot to end. That is
    a deadlock across two connections of two processes, which the server cannot see. The
    two-key lock is not in the key space of the workers' run locks (app/worker.py).
    """
    import psycopg

    conn.execute("SET lock_timeout = '100ms'")
    while True:
        try:
            conn.execute("SELECT pg_advisory_lock(hashtext('planexec'), hashtext('setup'))")
            return
        except psycopg.errors.LockNotAvailable:
            continue


def redact(url: str) -> str:
    """`url` without its password (in the user part or a password= query parameter)."""
    url = re.sub(r"(?i)(password=)[^&]*", r"\1***", url)
    # Up to the last '@': a password may itself hold '@', '/' or ':'.
    return re.sub(r"(?i)^([a-z][a-z0-9+.-]*://[^:/@]*):.*@", r"\1:***@", url)
