"""The single-machine queue for SQLite: one small table in the runs' own SQLite file.

procrastinate (the PostgreSQL queue) needs PostgreSQL, so workers sharing a SQLite file use this
table instead, with the same behaviour: a queued run is claimed by one worker, a worker that dies
has its run taken over at once, and claiming never reads run states.

    planexec_queue(seq, thread_id UNIQUE, claimed_by)

A claim is one short write transaction (BEGIN IMMEDIATE: SQLite lets one writer in at a time,
which serialises claimers), in which the worker also takes the run's flock (app/runs/worker.py):

1. A claimed row whose flock is free belongs to a worker that died (a live claimer holds the
   flock until it deletes or frees the row). Claimed rows are at most one per live worker, read
   through a partial index: the worker takes that row over.
2. Otherwise the oldest unclaimed row (a partial index on seq) whose flock it can take: a
   foreground `planexec resume` may hold one, so it tries a few.

Then `UPDATE ... SET claimed_by = me ... RETURNING`. A finished run's row is deleted; a run stopped
by SIGTERM gets claimed_by = NULL again, for the next worker.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

from app.runs.persistence import Persistence
from app.runs.worker import (
    EXIT_STOPPED,
    EventHandler,
    RunLocks,
    StopOnSignal,
    finish_run,
    run_locks,
)

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another process's write transaction
CANDIDATES = 8  # unclaimed rows tried per claim (each may be held by a foreground run)

SCHEMA = """
CREATE TABLE IF NOT EXISTS planexec_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id TEXT NOT NULL UNIQUE,
    claimed_by TEXT,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS planexec_queue_unclaimed ON planexec_queue (seq)
    WHERE claimed_by IS NULL;
CREATE INDEX IF NOT EXISTS planexec_queue_claimed ON planexec_queue (claimed_by)
    WHERE claimed_by IS NOT NULL;
"""


@contextmanager
def _connect(db_path: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT, isolation_level=None)
    with closing(conn):
        conn.executescript(SCHEMA)  # IF NOT EXISTS: safe when several workers start at once
        yield conn


def enqueue(db_path: str, thread_id: str) -> bool:
    """Queue a recorded run; False if it is queued already."""
    with _connect(db_path) as conn:
        cur = conn.execute(
            "INSERT OR IGNORE INTO planexec_queue (thread_id, enqueued_at) VALUES (?, ?)",
            (thread_id, time.time()),
        )
        return cur.rowcount == 1


def has_job(db_path: str, thread_id: str) -> bool:
    """Whether the run has a row in the queue; read only (`runs` and `show` make no table)."""
    with closing(sqlite3.connect(db_path, timeout=BUSY_TIMEOUT)) as conn:
        try:
            row = conn.execute(
                "SELECT 1 FROM planexec_queue WHERE thread_id = ?", (thread_id,)
            ).fetchone()
        except sqlite3.OperationalError:  # no queue table: nothing was ever queued here
            return False
        return row is not None


def queued_count(db_path: str) -> int:
    with _connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM planexec_queue").fetchone()[0]


def claim(conn: sqlite3.Connection, locks: RunLocks, me: str) -> tuple[str, bool] | None:
    """Claim a run (see the module docstring) and hold its lock: (thread id, whether it was a
    dead worker's); None if there is none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        claimed = conn.execute(
            "SELECT thread_id FROM planexec_queue WHERE claimed_by IS NOT NULL"
        ).fetchall()
        unclaimed = conn.execute(
            "SELECT thread_id FROM planexec_queue WHERE claimed_by IS NULL ORDER BY seq LIMIT ?",
            (CANDIDATES,),
        ).fetchall()
        for index, (thread_id,) in enumerate(claimed + unclaimed):
            if locks.try_acquire(thread_id):
                conn.execute(
                    "UPDATE planexec_queue SET claimed_by = ? WHERE thread_id = ?", (me, thread_id)
                )
                conn.execute("COMMIT")
                return thread_id, index < len(claimed)
        conn.execute("COMMIT")
        return None
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def work(
    persistence: Persistence,
    db_path: str,
    *,
    on_event: EventHandler | None = None,
    idle_exit: float | None = None,
    max_runs: int | None = None,
    grace: float = 30.0,
    poll: float = 0.2,
) -> tuple[list[tuple[str, str]], int]:
    """`planexec worker` on a SQLite file: see app/runs/worker.work."""
    finished: list[tuple[str, str]] = []
    me = f"{os.getpid()}:{secrets.token_hex(4)}"
    stop = StopOnSignal(grace)
    with _connect(db_path) as conn, run_locks(persistence) as locks, stop.installed():
        idle_since = time.monotonic()
        while not stop.requested.is_set() and (max_runs is None or len(finished) < max_runs):
            claimed = claim(conn, locks, me)
            if claimed is None:
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
                stop.requested.wait(poll)
                continue
            thread_id, takeover = claimed
            try:
                status = finish_run(persistence, thread_id, on_event, takeover=takeover)
            except BaseException:
                # Stopped (SIGTERM) or a database error: the run goes back to the queue.
                _set(conn, "UPDATE planexec_queue SET claimed_by = NULL", thread_id, me)
                locks.release(thread_id)
                if stop.requested.is_set():
                    break
                raise
            _set(conn, "DELETE FROM planexec_queue", thread_id, me)
            locks.release(thread_id)
            finished.append((thread_id, status))
            idle_since = time.monotonic()
    return finished, EXIT_STOPPED


def _set(conn: sqlite3.Connection, statement: str, thread_id: str, me: str) -> Any:
    return conn.execute(f"{statement} WHERE thread_id = ? AND claimed_by = ?", (thread_id, me))
