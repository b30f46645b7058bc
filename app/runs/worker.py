"""Workers: processes that take queued runs from a job queue and finish them.

The queue is a real job queue, not a scan of run states (docs/workers.md):

- PostgreSQL: procrastinate (app/runs/pg_queue.py). One job per run, with `queueing_lock` = the
  thread id; claims are `FOR UPDATE SKIP LOCKED` on an index, heartbeats mark live workers, and
  a worker whose heartbeat stops has its jobs retried by the others, on a takeover queue that a
  standby slot in every worker keeps free for them.
- SQLite (one machine): a small queue table in the same file (app/runs/local_queue.py).

Under both, the run itself is guarded by a lock that the operating system or the database server
releases when its holder dies: a PostgreSQL session advisory lock, or an flock on a file beside the
SQLite database. A job whose run is locked (a foreground `planexec resume`, or a worker wrongly
taken for dead) is retried later, never run twice at once. This module holds those run locks and
the job body both queues share (`finish_run`).
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from signal import SIGINT, SIGTERM
from typing import Any, Protocol

from app.runs import runner
from app.runs.persistence import Persistence
from graphs.scheduler import STOP_LAUNCHING

EventHandler = Callable[[str, dict[str, Any]], None]

# `planexec worker` exit codes (docs/workers.md).
EXIT_STOPPED = 0  # idle-exit, max-runs, or SIGTERM/SIGINT with the steps in flight finished
EXIT_GRACE_EXPIRED = 75  # stopped with steps still running after --grace: they run again elsewhere


class RunLocks(Protocol):
    def try_acquire(self, thread_id: str) -> bool: ...
    def release(self, thread_id: str) -> None: ...
    def held(self, thread_id: str) -> bool:
        """Whether a process holds the run now (a look: nothing is taken or made)."""
        ...


# Per schema: deployments (and concurrent test sessions) in two schemas of one database must not
# hold each other's same-named threads.
_KEY = "hashtext(current_schema() || ':' || %s)"


class _PostgresLocks:
    """Session advisory locks on a connection of this worker's own: they vanish with it.

    A session's advisory locks are re-entrant: the server would let two slots of this worker
    take the same run (its own standby slot claiming a job retried because this worker's
    heartbeat was late). So the runs held here are also kept in a set, and a second acquire
    is refused before the server is asked."""

    def __init__(self, url: str) -> None:
        import psycopg

        from app.runs.persistence import with_connect_timeout

        self._conn = psycopg.connect(with_connect_timeout(url), autocommit=True)
        self._held: set[str] = set()
        self._guard = threading.Lock()

    def try_acquire(self, thread_id: str) -> bool:
        with self._guard:
            if thread_id in self._held:
                return False
            row = self._conn.execute(
                f"SELECT pg_try_advisory_lock({_KEY})", (f"planexec:{thread_id}",)
            ).fetchone()
            if row and row[0]:
                self._held.add(thread_id)
                return True
            return False

    def held(self, thread_id: str) -> bool:
        if not self.try_acquire(thread_id):
            return True
        self.release(thread_id)
        return False

    def release(self, thread_id: str) -> None:
        with self._guard:
            if thread_id in self._held:
                self._held.discard(thread_id)
                self._conn.execute(f"SELECT pg_advisory_unlock({_KEY})", (f"planexec:{thread_id}",))

    def close(self) -> None:
        self._conn.close()


class _FileLocks:
    """flock()ed files beside the SQLite database; the kernel drops them when the process dies.

    A lock file exists only while its run is held: release unlinks it while still locked. A
    process that opened the file before the unlink and locks it afterwards holds a lock on a
    file no one else can find, so after locking it checks that the path is still that file.
    """

    def __init__(self, db_path: str) -> None:
        self._dir = lock_dir(db_path)
        self._held: dict[str, int] = {}

    def held(self, thread_id: str) -> bool:
        # Opened for reading, never created: `runs` and `show` work on a database they can
        # only read. A file left by a holder that died is not locked: not held.
        try:
            fd = os.open(lock_file(self._dir, thread_id), os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def try_acquire(self, thread_id: str) -> bool:
        if thread_id in self._held:
            return False
        self._dir.mkdir(parents=True, exist_ok=True)
        path = lock_file(self._dir, thread_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._held[thread_id] = fd
                return True
            os.close(fd)  # unlinked by its last holder between our open and our lock: again

    def release(self, thread_id: str) -> None:
        fd = self._held.pop(thread_id, None)
        if fd is not None:
            # While locked: see the class doc. A file that cannot be removed (its folder made
            # read-only meanwhile) is only left behind: unlocked, it holds nothing.
            with suppress(FileNotFoundError, PermissionError):
                os.unlink(lock_file(self._dir, thread_id))
            os.close(fd)  # closing the descriptor releases the flock

    def close(self) -> None:
        for thread_id in list(self._held):
            self.release(thread_id)


def lock_dir(db_path: str) -> Path:
    return Path(db_path).parent / (Path(db_path).name + ".locks")


def lock_file(directory: Path, thread_id: str) -> Path:
    # Thread ids are free text ("team/a", "..", very long): name the file by a hash.
    return directory / (hashlib.sha256(thread_id.encode()).hexdigest()[:32] + ".lock")


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

    def held(self, thread_id: str) -> bool:
        with self._guard:
            return thread_id in self._held

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


class RunStopped(RuntimeError):
    """The worker was asked to stop: the run stopped at a checkpoint, for another worker."""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def finish_run(
    persistence: Persistence,
    thread_id: str,
    on_event: EventHandler | None,
    *,
    takeover: bool = False,
) -> str:
    """The job body of both queues, run with the run's lock held: run it to the end from its
    last checkpoint and journal. Returns its final status ("error" for a run whose own
    configuration cannot start: reported, not retried). Raises RunStopped if the worker was asked
    to stop before the run finished. `takeover`: the run was another worker's (it died, or was
    stopped), as the `run_claimed` event says."""
    if on_event is not None:
        claimed = {"event": "run_claimed", "at": time.time(), "pid": os.getpid()}
        on_event(thread_id, {**claimed, "takeover": takeover})
    handler = (lambda e: on_event(thread_id, e)) if on_event else None
    try:
        state = runner.resume_run(persistence, thread_id, handler)
    except (ValueError, LookupError, runner.RunPaused) as exc:
        # The run's own configuration (a model, a scenario file, ...): report it and go on
        # with the others. Database errors still stop the worker.
        if on_event is not None:
            error = f"{type(exc).__name__}: {exc}"
            on_event(thread_id, {"event": "run_error", "at": time.time(), "error": error})
        return "error"
    except Exception as exc:
        # Asked to stop, the scheduler ends the run at its checkpoint by failing the next
        # executor node (graphs/scheduler.py): that is a stop, not a failure.
        if STOP_LAUNCHING.is_set():
            raise RunStopped(f"run {thread_id!r} stopped at a checkpoint") from exc
        raise
    status = state.get("status", "")
    if status not in runner.FINAL and status != runner.PAUSED:
        raise RunStopped(f"run {thread_id!r} stopped at status {status!r}")
    return status


def has_job(persistence: Persistence, thread_id: str) -> bool:
    """Whether a job for the run waits in (or is being done from) the queue."""
    if is_postgres(persistence.url):
        from app.runs import pg_queue

        return pg_queue.has_job(persistence.url, thread_id)
    if persistence.url.startswith("memory://"):
        return False
    from app.runs import local_queue

    return local_queue.has_job(persistence.url, thread_id)


def enqueue(persistence: Persistence, thread_id: str) -> bool:
    """Put a recorded run on the queue for a worker. False if it is already queued."""
    if is_postgres(persistence.url):
        from app.runs import pg_queue

        return pg_queue.enqueue(persistence.url, thread_id)
    from app.runs import local_queue

    return local_queue.enqueue(_local_db(persistence), thread_id)


@dataclass(frozen=True)
class Liveness:
    """PostgreSQL: how soon a dead worker's runs are taken over (docs/workers.md, "When a worker
    dies"). A worker whose last heartbeat is `stalled_after` seconds old is dead; each worker
    sends one every `heartbeat` seconds (default stalled_after / 4) and looks for dead workers'
    runs every `check_every` seconds. A kill is noticed `stalled_after` - `heartbeat` to
    `stalled_after` + `check_every` seconds after it."""

    stalled_after: float = 4.0
    heartbeat: float = None  # type: ignore[assignment]  # None: stalled_after / 4
    check_every: float = 0.5

    def __post_init__(self) -> None:
        if self.heartbeat is None:
            object.__setattr__(self, "heartbeat", self.stalled_after / 4)
        times = {"--stalled-after": self.stalled_after, "--heartbeat": self.heartbeat,
                 "--stalled-check": self.check_every}  # fmt: skip
        for option, value in times.items():
            if not math.isfinite(value):  # nan passes every `<=` check; inf never comes
                raise ValueError(f"{option} is {value}; give a number of seconds")
        if self.heartbeat <= 0 or self.check_every <= 0:
            raise ValueError(
                f"--heartbeat ({self.heartbeat} s) and --stalled-check ({self.check_every} s) "
                "must be more than 0 seconds"
            )
        if self.heartbeat * 2 > self.stalled_after:
            raise ValueError(
                f"--heartbeat ({self.heartbeat} s) must be at most half of --stalled-after "
                f"({self.stalled_after} s), or a live worker is taken for dead between two "
                "heartbeats; lower --heartbeat or raise --stalled-after"
            )


class Slots:
    """One worker process's runs, across its slots (threads): what it claimed, what it finished,
    whether it may claim more (`--max-runs`, a stop) and how long it has had nothing to do."""

    def __init__(self, max_runs: int | None) -> None:
        self.max_runs = max_runs
        self.done: list[tuple[str, str]] = []
        self._claimed = self._running = 0
        self._stopping = False
        self._last_active = time.monotonic()
        self._lock = threading.Lock()

    def claim(self) -> bool:
        with self._lock:
            full = self.max_runs is not None and self._claimed >= self.max_runs
            if self._stopping or full:
                return False
            self._claimed += 1
            self._running += 1
            return True

    def unclaim(self) -> None:
        """The claimed run was not finished here (held elsewhere, or stopped): it is not ours.
        Not activity either: a job bounced while someone else holds its run keeps no worker
        from being idle."""
        with self._lock:
            self._claimed -= 1
            self._running -= 1

    def finished(self, thread_id: str, status: str) -> bool:
        """Count a finished run; True once --max-runs are done."""
        with self._lock:
            self._running -= 1
            self._last_active = time.monotonic()
            self.done.append((thread_id, status))
            return self.max_runs is not None and len(self.done) >= self.max_runs

    def stop(self) -> None:
        with self._lock:
            self._stopping = True

    def idle_for(self) -> float:
        with self._lock:
            return 0.0 if self._running else time.monotonic() - self._last_active


def work(
    persistence: Persistence,
    *,
    on_event: EventHandler | None = None,
    idle_exit: float | None = None,
    max_runs: int | None = None,
    grace: float = 30.0,
    liveness: Liveness | None = None,
    concurrency: int = 1,
) -> tuple[list[tuple[str, str]], int]:
    """Claim and finish queued runs until idle for `idle_exit` seconds (forever when None),
    `max_runs` are done, or SIGTERM/SIGINT (then the steps in flight get `grace` seconds).
    Returns (thread id, final status) for each run finished here, and the exit code.
    PostgreSQL: `concurrency` runs at once plus a standby slot for takeovers, `liveness` for
    noticing dead workers. SQLite: one run at a time (run more worker processes)."""
    if on_event is not None:
        on_event = _one_at_a_time(on_event)  # runs in several threads: whole lines, in turn
    if is_postgres(persistence.url):
        from app.runs import pg_queue

        return pg_queue.work(
            persistence, on_event=on_event, idle_exit=idle_exit, max_runs=max_runs,
            grace=grace, liveness=liveness, concurrency=concurrency,
        )  # fmt: skip
    if concurrency != 1:
        raise ValueError(
            f"--concurrency {concurrency}: a worker on SQLite runs one run at a time; start "
            "more worker processes on the same file instead"
        )
    from app.runs import local_queue

    return local_queue.work(
        persistence, _local_db(persistence), on_event=on_event, idle_exit=idle_exit,
        max_runs=max_runs, grace=grace,
    )  # fmt: skip


def _one_at_a_time(on_event: EventHandler) -> EventHandler:
    lock = threading.Lock()

    def handler(thread_id: str, event: dict[str, Any]) -> None:
        with lock:
            on_event(thread_id, event)

    return handler


def _local_db(persistence: Persistence) -> str:
    if persistence.url.startswith("memory://"):
        raise ValueError(
            "workers need a database other processes can see: memory:// is this process's "
            "only; use a SQLite file or postgresql://"
        )
    return persistence.url


class StopOnSignal:
    """SIGTERM or SIGINT to a worker: claim nothing more, let the steps in flight finish (the
    scheduler's STOP_LAUNCHING starts no new step, and the run stops at its next checkpoint),
    hand the run back to the queue, exit EXIT_STOPPED. If that takes longer than `grace`
    seconds, or a second signal comes, exit EXIT_GRACE_EXPIRED at once: the run's lock dies with
    the process and the steps in flight run again under another worker (journaled ones do not)."""

    def __init__(self, grace: float, on_stop: Callable[[], None] = lambda: None) -> None:
        self.grace = grace
        self.requested = threading.Event()
        self._on_stop = on_stop

    def trigger(self, *_: Any) -> None:
        if self.requested.is_set():
            os._exit(EXIT_GRACE_EXPIRED)
        self.requested.set()
        STOP_LAUNCHING.set()
        timer = threading.Timer(self.grace, os._exit, (EXIT_GRACE_EXPIRED,))
        timer.daemon = True
        timer.start()
        self._on_stop()

    @contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        """Handle the signals with plain handlers (for a worker with no event loop)."""
        STOP_LAUNCHING.clear()
        previous = {sig: signal.signal(sig, self.trigger) for sig in (SIGTERM, SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
