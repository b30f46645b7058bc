"""A throwaway PostgreSQL schema for integration tests, and a `--db` URL whose connections use it.

The server is taken from PLANEXEC_TEST_POSTGRES_URL (default: the local trust-auth server CI
starts, `postgresql://postgres@127.0.0.1:5432/test`). An unreachable server fails the test: it
is never skipped, because a skipped Postgres test in CI would hide a broken setup.
"""

from __future__ import annotations

import os
import secrets
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


def admin_url() -> str:
    return os.environ.get("PLANEXEC_TEST_POSTGRES_URL") or DEFAULT_URL


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
    try:
        conn = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        error = str(exc).strip()
    else:
        error = ""
    if error:  # outside `except`: the failure message alone, no chained traceback
        pytest.fail(
            f"PostgreSQL is not reachable at {base}: {error}\nThese integration tests need a "
            "running server (CI starts one); start it or set PLANEXEC_TEST_POSTGRES_URL.",
            pytrace=False,
        )
    with conn:
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
