"""Workers on PostgreSQL: planexec runs as procrastinate jobs.

One job per run (task `planexec.run`, argument `thread_id`), deferred with `queueing_lock` = the
thread id: a run is queued at most once. procrastinate claims with `FOR UPDATE SKIP LOCKED` on
its (priority, id) index and wakes idle workers with LISTEN/NOTIFY, so a claim costs the same
with 10 or 10,000 runs queued (benchmarks/workers.py measures it).

Not procrastinate's job `lock`: with a lock on every job, its claim function checks each
candidate's lock through an index whose leading column is the job id, a scan of the whole queue
(0.44 ms per claim with 10,000 queued once analyzed; 11.4 s per claim on a freshly filled table
the planner had no statistics for). One run per worker is kept by the run's advisory lock below.

Dead workers: procrastinate 3.10 records a heartbeat per worker and can list the `doing` jobs of
workers whose heartbeat is older than N seconds (`get_stalled_jobs`), but leaves retrying them to
the application. Every worker here does that every second: a killed worker's run is retried, and
resumed from its checkpoint and journal by another worker, `stalled_after` seconds after its last
heartbeat (default 5 s; heartbeats every stalled_after/4).

One thread never runs in two workers: the job body holds the run's session advisory lock
(app/runs/worker.py), which only the server releases, when the holder's connection ends. A job
whose run is locked (a worker wrongly taken for dead, a paused VM; a `planexec resume` in a
terminal; a second job queued while the first runs) raises RunBusy and is retried a second later.

Schema: procrastinate's own tables, created on first use under a transaction-level advisory lock,
so several workers starting at once on a new database create them once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector, RetryStrategy, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker

from app.runs.persistence import Persistence
from app.runs.worker import (
    EXIT_STOPPED,
    EventHandler,
    RunBusy,
    RunStopped,
    StopOnSignal,
    finish_run,
    run_locks,
)

TASK = "planexec.run"
QUEUE = "planexec"
# RunBusy: someone holds the run, try again in a second. RunStopped: this worker is stopping;
# the run goes back to the queue for another. Anything else is a bug or a database error: the
# job fails and stays visible in procrastinate's tables.
RETRY = RetryStrategy(wait=1, retry_exceptions={RunBusy, RunStopped})


def _task(app: App, body: Any) -> Any:
    return app.task(name=TASK, queue=QUEUE, retry=RETRY, pass_context=False)(body)


def ensure_schema(url: str) -> None:
    """Create procrastinate's tables unless they exist; one process at a time."""
    with psycopg.connect(url, autocommit=False, connect_timeout=10) as conn:
        conn.execute("SET LOCAL lock_timeout = '60s'")
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('planexec'), hashtext('procrastinate'))"
        )
        row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if row is None or row[0] is None:
            conn.execute(SchemaManager.get_schema())  # type: ignore[arg-type]
        conn.commit()


def enqueue(url: str, thread_id: str) -> bool:
    """Defer the run's job; False if it is queued already (its queueing lock is taken)."""
    return enqueue_many(url, [thread_id]) == 1


def enqueue_many(url: str, thread_ids: list[str]) -> int:
    """Defer one job per run; returns how many were queued (not queued already)."""
    ensure_schema(url)
    app = App(connector=SyncPsycopgConnector(conninfo=url, min_size=1, max_size=1))
    task = _task(app, lambda thread_id: None)
    queued = 0
    with app.open():
        for thread_id in thread_ids:
            try:
                task.configure(queueing_lock=thread_id).defer(thread_id=thread_id)
            except AlreadyEnqueued:
                continue
            queued += 1
    if queued > 1000:  # fresh statistics, or the claim's plan may scan the queue
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("ANALYZE procrastinate_jobs")
    return queued


def work(
    persistence: Persistence,
    *,
    on_event: EventHandler | None = None,
    idle_exit: float | None = None,
    max_runs: int | None = None,
    grace: float = 30.0,
    stalled_after: float = 5.0,
) -> tuple[list[tuple[str, str]], int]:
    """`planexec worker` on PostgreSQL: see app/runs/worker.work."""
    ensure_schema(persistence.url)
    return asyncio.run(
        _work(persistence, on_event, idle_exit, max_runs, grace, max(stalled_after, 1.0))
    )


async def _work(
    persistence: Persistence,
    on_event: EventHandler | None,
    idle_exit: float | None,
    max_runs: int | None,
    grace: float,
    stalled_after: float,
) -> tuple[list[tuple[str, str]], int]:
    finished: list[tuple[str, str]] = []
    busy = threading.Event()
    last_active = [time.monotonic()]
    app = App(connector=PsycopgConnector(conninfo=persistence.url, min_size=1, max_size=4))
    worker: Worker | None = None

    with run_locks(persistence) as locks:

        def run_job(thread_id: str) -> str:
            """Runs in procrastinate's thread for sync tasks, one at a time."""
            if not locks.try_acquire(thread_id):
                raise RunBusy(f"run {thread_id!r} is held by another process")
            busy.set()
            try:
                status = finish_run(persistence, thread_id, on_event)
            finally:
                locks.release(thread_id)
                busy.clear()
                last_active[0] = time.monotonic()
            finished.append((thread_id, status))
            if max_runs is not None and len(finished) >= max_runs and worker is not None:
                worker.stop()  # before procrastinate fetches another job
            return status

        _task(app, run_job)
        stop = StopOnSignal(grace, on_stop=lambda: worker.stop() if worker else None)
        async with app.open_async():
            worker = Worker(
                app,
                queues=[QUEUE],
                name=f"planexec-{os.getpid()}",
                concurrency=1,  # a run uses threads for its own parallel steps
                install_signal_handlers=False,  # StopOnSignal: steps in flight finish first
                shutdown_graceful_timeout=None,  # StopOnSignal's timer enforces the grace
                delete_jobs="successful",  # storage stays bounded; failed jobs stay to inspect
                update_heartbeat_interval=stalled_after / 4,
                stalled_worker_timeout=stalled_after,
                fetch_job_polling_interval=1.0,  # LISTEN/NOTIFY wakes workers sooner
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.trigger)
            running = asyncio.create_task(worker.run())
            helpers = [asyncio.create_task(_recover_stalled(app, stalled_after))]
            if idle_exit is not None:
                helpers.append(
                    asyncio.create_task(_stop_when_idle(worker, busy, last_active, idle_exit))
                )
            try:
                await running
            finally:
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
    return finished, EXIT_STOPPED


async def _recover_stalled(app: App, stalled_after: float) -> None:
    """Retry the jobs of workers whose heartbeat stopped (procrastinate lists them; retrying
    is left to the application). Several workers may retry the same job: one wins."""
    while True:
        await asyncio.sleep(1.0)
        try:
            stalled = await app.job_manager.get_stalled_jobs(
                task_name=TASK, seconds_since_heartbeat=stalled_after
            )
            for job in stalled:
                try:
                    await app.job_manager.retry_job(job)
                except Exception:  # another worker retried it first: its status moved on
                    continue
        except Exception:  # a lost connection: the worker's own loop reports it; try again
            continue


async def _stop_when_idle(
    worker: Worker, busy: threading.Event, last_active: list[float], idle_exit: float
) -> None:
    while True:
        await asyncio.sleep(0.1)
        if not busy.is_set() and time.monotonic() - last_active[0] >= idle_exit:
            worker.stop()
            return
