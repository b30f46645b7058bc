"""Workers: processes that take queued or interrupted runs from a shared database and finish them.

Several workers can share one PostgreSQL database (or one SQLite file on one machine). A worker
claims a run with a lock that the operating system or the database server releases when the worker
dies — a PostgreSQL session advisory lock, or an flock on a file beside the SQLite database — so a
run whose worker was killed is free at once for another worker, which resumes it from its last
checkpoint and journal. No leases, no heartbeats, no run executed by two workers at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from app.runs import runner
from app.runs.persistence import Persistence

UNFINISHED = ("queued", "interrupted", "running")


class RunLocks(Protocol):
    def try_acquire(self, thread_id: str) -> bool: ...
    def release(self, thread_id: str) -> None: ...


class _PostgresLocks:
    """Session advisory locks on a connection of this worker's own: they vanish with it."""

    def __init__(self, url: str) -> None:
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True)

    def try_acquire(self, thread_id: str) -> bool:
        row = self._conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (f"planexec:{thread_id}",)
        ).fetchone()
        return bool(row and row[0])

    def release(self, thread_id: str) -> None:
        self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"planexec:{thread_id}",))

    def close(self) -> None:
        self._conn.close()


class _FileLocks:
    """flock()ed files beside the SQLite database; the kernel drops them when the process dies."""

    def __init__(self, db_path: str) -> None:
        self._dir = Path(db_path).parent / (Path(db_path).name + ".locks")
        self._dir.mkdir(parents=True, exist_ok=True)
        self._held: dict[str, int] = {}

    def try_acquire(self, thread_id: str) -> bool:
        # Thread ids are free text ("team/a", "..", very long): name the file by a hash.
        name = hashlib.sha256(thread_id.encode()).hexdigest()[:32]
        fd = os.open(self._dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[thread_id] = fd
        return True

    def release(self, thread_id: str) -> None:
        fd = self._held.pop(thread_id, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def close(self) -> None:
        for thread_id in list(self._held):
            self.release(thread_id)


class _ProcessLocks:
    """For memory://: only this process can see the runs anyway."""

    _held: set[str] = set()
    _guard = threading.Lock()

    def try_acquire(self, thread_id: str) -> bool:
        with self._guard:
            if thread_id in self._held:
                return False
            self._held.add(thread_id)
            return True

    def release(self, thread_id: str) -> None:
        with self._guard:
            self._held.discard(thread_id)

    def close(self) -> None:
        pass


@contextmanager
def run_locks(persistence: Persistence) -> Iterator[RunLocks]:
    url = persistence.url
    if url.startswith(("postgresql://", "postgres://")):
        locks: Any = _PostgresLocks(url)
    elif url.startswith("memory://"):
        locks = _ProcessLocks()
    else:
        locks = _FileLocks(url)
    try:
        yield locks
    finally:
        locks.close()


class RunBusy(RuntimeError):
    """Another process (a worker, or `planexec run`/`resume`) is running this run right now."""


@contextmanager
def holding_run(persistence: Persistence, thread_id: str) -> Iterator[None]:
    """Hold `thread_id`'s run lock while this process drives the run outside a worker: a run
    in progress looks queued or interrupted to workers, and the lock is what keeps them off."""
    with run_locks(persistence) as locks:
        if not locks.try_acquire(thread_id):
            raise RunBusy(
                f"run {thread_id!r} is being run by another process (a worker?) right now; "
                f"`planexec show {thread_id}` shows its progress"
            )
        try:
            yield
        finally:
            locks.release(thread_id)


def pending_runs(persistence: Persistence) -> list[str]:
    """Thread ids of runs that are queued or were interrupted, oldest first. Runs whose record
    says they finished are skipped without reading their state: a poll stays cheap as runs pile
    up."""
    return [
        thread_id
        for thread_id, record in runner.run_records(persistence)
        if "final_status" not in record
        and runner.run_state(persistence, thread_id).get("status") in UNFINISHED
    ]


def work(
    persistence: Persistence,
    *,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    idle_exit: float | None = None,
    poll: float = 0.5,
    max_runs: int | None = None,
) -> list[tuple[str, str]]:
    """Claim and finish runs until idle for `idle_exit` seconds (forever when None) or
    `max_runs` are done. Returns (thread id, final status) for each run this worker finished."""
    finished: list[tuple[str, str]] = []
    broken: set[str] = set()  # runs that could not start here: not claimed again
    idle_since = time.monotonic()
    with run_locks(persistence) as locks:
        while max_runs is None or len(finished) < max_runs:
            claimed = _claim_one(persistence, locks, skip=broken)
            if claimed is None:
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
                time.sleep(poll)
                continue
            try:
                # Another worker may have finished it between the listing and the lock.
                if runner.run_state(persistence, claimed)["status"] in UNFINISHED:
                    handler = (lambda e, t=claimed: on_event(t, e)) if on_event else None
                    try:
                        state = runner.resume_run(persistence, claimed, handler)
                    except (ValueError, LookupError, runner.RunPaused) as exc:
                        # The run's own configuration (a model, a scenario file, ...): report
                        # it and go on with the others. Database errors still stop the worker.
                        broken.add(claimed)
                        finished.append((claimed, "error"))
                        if on_event is not None:
                            on_event(
                                claimed,
                                {
                                    "event": "run_error",
                                    "at": time.time(),
                                    "error": f"{type(exc).__name__}: {exc}",
                                },
                            )
                    else:
                        finished.append((claimed, state.get("status", "")))
            finally:
                locks.release(claimed)
            idle_since = time.monotonic()
    return finished


def _claim_one(
    persistence: Persistence,
    locks: RunLocks,
    skip: Collection[str] = (),
) -> str | None:
    for thread_id in pending_runs(persistence):
        if thread_id not in skip and locks.try_acquire(thread_id):
            return thread_id
    return None
