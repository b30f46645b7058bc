"""Database URLs to a LangGraph checkpointer and store.

    memory://                         in-process only (tests, throwaway runs)
    path/to/file.sqlite               SQLite (the default: ./.planexec/planexec.sqlite)
    sqlite:///abs/path.sqlite         the same, as a URL
    postgresql://user@host:5432/db    PostgreSQL, for servers and several workers

The checkpointer holds the run's state between nodes; the store journals each finished step
(graphs/journal.py). Both live in the same database.
"""

from __future__ import annotations

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


class DatabaseURLError(ValueError):
    """A --db / PLANEXEC_DB value that cannot be opened."""


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


def default_db_url() -> str:
    return os.environ.get("PLANEXEC_DB") or DEFAULT_DB


@contextmanager
def open_persistence(url: str | None = None) -> Iterator[Persistence]:
    """Open the checkpointer and store for `url`, creating tables on first use."""
    url = url or default_db_url()
    if url.startswith("memory://"):
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.store.memory import InMemoryStore

        yield Persistence(InMemorySaver(), InMemoryStore(), url)
    elif url.startswith(("postgresql://", "postgres://")):
        with _postgres(url) as persistence:
            yield persistence
    else:
        with _sqlite(url) as persistence:
            yield persistence


@contextmanager
def _sqlite(url: str) -> Iterator[Persistence]:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.store.sqlite import SqliteStore

    path = Path(url.removeprefix("sqlite:///") if url.startswith("sqlite:") else url).expanduser()
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


@contextmanager
def _postgres(url: str) -> Iterator[Persistence]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore

    with ExitStack() as stack:
        # Only opening and setup are wrapped: an error during the run is not "cannot connect".
        try:
            checkpointer = stack.enter_context(PostgresSaver.from_conn_string(url))
            store = stack.enter_context(PostgresStore.from_conn_string(url))
            # setup() reads the schema version, then migrates, with no lock: two processes
            # starting at once on a new database both migrate and one fails on a duplicate key.
            with psycopg.connect(url, autocommit=True) as guard:
                _take_setup_turn(guard)
                checkpointer.setup()
                store.setup()
        except psycopg.OperationalError as exc:
            raise DatabaseURLError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
        except psycopg.Error as exc:  # a missing schema, no CREATE privilege, ...
            raise DatabaseURLError(f"cannot set up PostgreSQL at {redact(url)}: {exc}") from exc
        yield Persistence(checkpointer, store, url)


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
