"""Workers on PostgreSQL: planexec runs as procrastinate jobs.

One job per run (task `planexec.run`, argument `thread_id`), deferred with `queueing_lock` = the
thread id: a run is queued at most once. procrastinate claims with `FOR UPDATE SKIP LOCKED` on
its (priority, id) index and wakes idle workers with LISTEN/NOTIFY, so a claim costs the same
with 10 or 10,000 runs queued (benchmarks/workers.py measures it).

Not procrastinate's job `lock`: with a lock on every job, its claim function checks each
candidate's lock through an index whose leading column is the job id, a scan of the whole queue
(0.44 ms per claim with 10,000 queued once analyzed; 11.4 s per claim on a freshly filled table
the planner had no statistics for). One run per worker is kept by the run's advisory lock below.

Slots. A worker runs `concurrency` runs at once (procrastinate runs each sync job body in a
thread of its own), taken from both queues below, plus one **standby** slot that takes only
takeover jobs. A run whose worker died therefore never waits for a busy worker to finish a run:
with 1,000 runs queued every ordinary slot is busy, and the standby slots are free.

Dead workers: procrastinate 3.10 records a heartbeat per worker and can list the `doing` jobs of
workers whose heartbeat is older than N seconds (`get_stalled_jobs`), but leaves retrying them to
the application. Every worker looks every `Liveness.check_every` seconds (one at a time, under an
advisory lock, so a job is retried once) and retries each such job on the takeover queue
`planexec_takeover` with a higher priority, then NOTIFYs that queue's channel: a standby slot
claims it at once and resumes the run from its checkpoint and journal. A run handed back by a
stopping worker (SIGTERM) goes to the takeover queue too.

One thread never runs in two workers: the job body holds the run's session advisory lock
(app/runs/worker.py), which only the server releases, when the holder's connection ends. A job
whose run is locked (a worker wrongly taken for dead, a paused VM; a `planexec resume` in a
terminal; a second job queued while the first runs) raises RunBusy and is retried a second later
on the queue it is on.

Schema: procrastinate's own tables, created on first use under a transaction-level advisory lock,
so several workers starting at once on a new database create them once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from procrastinate import App, JobContext, PsycopgConnector, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.jobs import Job
from procrastinate.manager import get_channel_for_queues
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker

from app.runs.persistence import Persistence
from app.runs.worker import (
    EXIT_STOPPED,
    EventHandler,
    Liveness,
    RunBusy,
    RunStopped,
    Slots,
    StopOnSignal,
    finish_run,
    run_locks,
)

TASK = "planexec.run"
QUEUE = "planexec"
TAKEOVER_QUEUE = "planexec_takeover"  # runs of dead or stopped workers: standby slots take them
TAKEOVER_PRIORITY = 1  # ahead of fresh runs (priority 0) in ordinary slots too
STANDBY_SLOTS = 1
# Two-key advisory lock (apart from the one-key run locks): one recoverer at a time, per schema.
_RECOVERY_LOCK = (
    "pg_try_advisory_xact_lock(hashtext('planexec-recovery'), hashtext(current_schema()))"
)


class _Retry(BaseRetryStrategy):
    """RunBusy: someone holds the run, try again in a second on the same queue. RunStopped: this
    worker is stopping; the run goes to the takeover queue, for a free slot of another worker.
    Anything else is a bug or a database error: the job fails and stays visible in procrastinate's
    tables."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, RunBusy):
            return RetryDecision(retry_in={"seconds": 1})
        if isinstance(exception, RunStopped):
            return RetryDecision(queue=TAKEOVER_QUEUE, priority=TAKEOVER_PRIORITY)
        return None


def _task(app: App, body: Any) -> Any:
    return app.task(name=TASK, queue=QUEUE, retry=_Retry(), pass_context=True)(body)


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


def has_job(url: str, thread_id: str) -> bool:
    """Whether the run's job waits or runs (procrastinate deletes a job that succeeded)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
            return False
        row = conn.execute(
            "SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %s "
            "AND status IN ('todo', 'doing')",
            (thread_id,),
        ).fetchone()
        return row is not None


def enqueue(url: str, thread_id: str) -> bool:
    """Defer the run's job; False if it is queued already (its queueing lock is taken)."""
    return enqueue_many(url, [thread_id]) == 1


def enqueue_many(url: str, thread_ids: list[str]) -> int:
    """Defer one job per run; returns how many were queued (not queued already)."""
    ensure_schema(url)
    app = App(connector=SyncPsycopgConnector(conninfo=url, min_size=1, max_size=1))
    task = _task(app, lambda context, thread_id: None)
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
    liveness: Liveness | None = None,
    concurrency: int = 1,
) -> tuple[list[tuple[str, str]], int]:
    """`planexec worker` on PostgreSQL: see app/runs/worker.work."""
    ensure_schema(persistence.url)
    slots = Slots(max_runs)
    return asyncio.run(
        _work(persistence, on_event, slots, idle_exit, grace, liveness or Liveness(), concurrency)
    )


async def _work(
    persistence: Persistence,
    on_event: EventHandler | None,
    slots: Slots,
    idle_exit: float | None,
    grace: float,
    liveness: Liveness,
    concurrency: int,
) -> tuple[list[tuple[str, str]], int]:
    loop = asyncio.get_running_loop()
    # procrastinate runs sync job bodies on the loop's default executor: one thread per slot,
    # plus room for the odd short call, so no run waits for a thread.
    loop.set_default_executor(
        ThreadPoolExecutor(concurrency + STANDBY_SLOTS + 2, thread_name_prefix="planexec-run")
    )
    url = persistence.url
    app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=concurrency + 8))
    workers: list[Worker] = []

    def stop_all() -> None:
        for w in workers:
            w.stop()

    with run_locks(persistence) as locks:

        def run_job(context: JobContext, thread_id: str) -> str:
            """Runs in a thread of its own, one per busy slot."""
            if not slots.claim():  # stopping, or --max-runs reached: for another worker
                raise RunStopped(f"run {thread_id!r} left for another worker")
            try:
                if not locks.try_acquire(thread_id):
                    raise RunBusy(f"run {thread_id!r} is held by another process")
                try:
                    takeover = context.job.queue == TAKEOVER_QUEUE
                    status = finish_run(persistence, thread_id, on_event, takeover=takeover)
                finally:
                    locks.release(thread_id)
            except BaseException:
                slots.unclaim()
                raise
            if slots.finished(thread_id, status):
                loop.call_soon_threadsafe(stop_all)  # --max-runs: no more claims
            return status

        _task(app, run_job)

        def on_signal() -> None:
            slots.stop()
            stop_all()

        stop = StopOnSignal(grace, on_stop=on_signal)  # called on the loop (add_signal_handler)
        async with app.open_async():
            common = {
                "install_signal_handlers": False,  # StopOnSignal: steps in flight finish first
                "shutdown_graceful_timeout": None,  # StopOnSignal's timer enforces the grace
                "delete_jobs": "successful",  # storage stays bounded; failed jobs to inspect
                "update_heartbeat_interval": liveness.heartbeat,
                "stalled_worker_timeout": liveness.stalled_after,
                "fetch_job_polling_interval": 1.0,  # LISTEN/NOTIFY wakes workers sooner
            }
            workers += [
                Worker(app, queues=[QUEUE, TAKEOVER_QUEUE], name=f"planexec-{os.getpid()}",
                       concurrency=concurrency, **common),
                Worker(app, queues=[TAKEOVER_QUEUE], name=f"planexec-{os.getpid()}-standby",
                       concurrency=STANDBY_SLOTS, **common),
            ]  # fmt: skip
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.trigger)
            running = asyncio.gather(*(w.run() for w in workers))
            helpers = [asyncio.create_task(_recover_stalled(app, url, liveness))]
            if idle_exit is not None:
                helpers.append(asyncio.create_task(_stop_when_idle(slots, idle_exit, stop_all)))
            try:
                await running
            finally:
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
    return slots.done, EXIT_STOPPED


async def _recover_stalled(app: App, url: str, liveness: Liveness) -> None:
    """Retry the jobs of workers whose heartbeat stopped (procrastinate lists them; retrying is
    left to the application) on the takeover queue, and wake the standby slots.

    One worker at a time (a transaction-level advisory lock; the others skip that round): two
    recoverers listing the same job would both retry it, the second after a live worker had
    claimed it again."""
    (channel,) = get_channel_for_queues([TAKEOVER_QUEUE])
    while True:
        await asyncio.sleep(liveness.check_every)
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=10
            ) as conn:
                while True:
                    async with conn.transaction():
                        row = await (await conn.execute(f"SELECT {_RECOVERY_LOCK}")).fetchone()
                        if row and row[0]:
                            retried = await _retry_stalled(app, liveness)
                            for job_id in retried:
                                payload = json.dumps({"type": "job_inserted", "job_id": job_id})
                                await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                    await asyncio.sleep(liveness.check_every)
        except (psycopg.Error, OSError, ConnectorException):
            continue  # a lost connection: the worker's own loop reports it; try again


async def _retry_stalled(app: App, liveness: Liveness) -> list[int]:
    stalled = await app.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=liveness.stalled_after
    )
    retried = []
    for job in stalled:
        try:
            await app.job_manager.retry_job(job, queue=TAKEOVER_QUEUE, priority=TAKEOVER_PRIORITY)
        except ConnectorException:  # finished meanwhile by a worker wrongly taken for dead
            continue
        assert job.id is not None
        retried.append(job.id)
    return retried


async def _stop_when_idle(slots: Slots, idle_exit: float, stop_all: Any) -> None:
    while True:
        await asyncio.sleep(0.1)
        if slots.idle_for() >= idle_exit:
            stop_all()
            return
