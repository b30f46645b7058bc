"""Workers on the job queue: graceful SIGTERM, a grace that runs out, killed foreground runs
handed to workers with `resume --queue`, and the embedded PostgreSQL the tests fall back to.

Workers are real `planexec worker` processes (helpers in test_workers.py); PostgreSQL tests use
a throwaway schema (tests/integration/pg.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import (
    clean_env,
    cli,
    fanout_args,
    finished_ids,
    of_kind,
    run_until_then_kill,
    slow_alone_in_flight,
    started_ids,
)
from tests.integration import pg as pg_module
from tests.integration.pg import PgSchema
from tests.integration.test_workers import (
    SLOW,
    SLOW_STEPS,
    WAIT,
    LineReader,
    Worker,
    cli_json,
    pg,  # noqa: F401 - the fixture
    queue_run,
    run_cli,
    worker_done,
)

pytestmark = pytest.mark.integration


def start_reading(db: str, cwd: Path, *extra: str) -> tuple[subprocess.Popen[str], LineReader]:
    proc = subprocess.Popen(
        cli("worker", "--db", db, "--json", *extra),
        cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, LineReader(proc.stdout)


def read_until(reader: LineReader, events: list[dict[str, Any]], step: str) -> None:
    """Read the worker's events until `step` has started."""
    deadline = time.monotonic() + WAIT
    while step not in started_ids(events):
        event = reader.next_event(deadline)
        assert event is not None, f"the worker ended before {step} started: {events}"
        events.append(event)


def read_to_end(reader: LineReader, events: list[dict[str, Any]]) -> None:
    deadline = time.monotonic() + WAIT
    while (event := reader.next_event(deadline)) is not None:
        events.append(event)


def test_sigterm_finishes_the_steps_in_flight_and_hands_the_run_to_another_worker(
    pg: PgSchema,  # noqa: F811
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    queue_run("T", SLOW, ws, pg.url, tmp_path)
    a, reader = start_reading(pg.url, tmp_path, "--grace", "30")
    first: list[dict[str, Any]] = []
    try:
        read_until(reader, first, "slow")  # slow takes 2 s
        a.send_signal(signal.SIGTERM)
        read_to_end(reader, first)
        a.wait(timeout=WAIT)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(timeout=10)

    assert a.returncode == 0, "a graceful stop exits 0 (docs/workers.md)"
    # The step in flight finished under A; no step started after the signal.
    assert "slow" in finished_ids(first, recovered=False)
    assert "join" not in started_ids(first)
    assert worker_done(first) == {}, "A stopped before the run finished: it is not A's"

    # The run went back to the queue: B finishes it, starting only what A never started.
    second = Worker.run_until_idle(pg.url, tmp_path, "b", "4")
    assert worker_done(second) == {"T": "done"}
    assert set(started_ids(second)) == SLOW_STEPS - set(started_ids(first))
    log = (ws / "log.txt").read_text().split()
    assert sorted(log) == sorted(SLOW_STEPS), f"each step's side effect once: {log}"


def test_a_grace_that_runs_out_exits_75_and_another_worker_takes_the_run_over(
    tmp_path: Path,
) -> None:
    db, ws = str(tmp_path / "runs.sqlite"), tmp_path / "ws"
    queue_run("T", SLOW, ws, db, tmp_path)
    a, reader = start_reading(db, tmp_path, "--grace", "0.3")
    first: list[dict[str, Any]] = []
    try:
        read_until(reader, first, "after_quick")  # quick done, slow (2 s) in flight
        a.send_signal(signal.SIGTERM)
        a.wait(timeout=WAIT)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(timeout=10)
    assert a.returncode == 75, "slow (2 s) cannot finish in 0.3 s: the worker quits at once"

    # A's queue row is still claimed by A, whose flock died with it: B takes it over.
    second = Worker.run_until_idle(db, tmp_path, "b", "1")
    assert worker_done(second) == {"T": "done"}
    # ... and says so: the claim came from A's claimed row, not from the unclaimed ones.
    assert [e["takeover"] for e in of_kind(second, "run_claimed")] == [True]
    log = (ws / "log.txt").read_text().split()
    done_by_a = set(finished_ids(first))
    assert "quick" in done_by_a, "the quit must come after quick finished"
    for step in SLOW_STEPS:  # a step in flight at the quit may have written once under A
        allowed = {1} if step in done_by_a or step == "join" else {1, 2}
        assert log.count(step) in allowed, (step, log)
    assert "quick" not in started_ids(second), "a journaled step ran again"


def test_a_killed_foreground_run_is_finished_by_a_worker_after_resume_queue(
    tmp_path: Path,
) -> None:
    db, ws = str(tmp_path / "runs.sqlite"), tmp_path / "ws"
    run_until_then_kill(*fanout_args(ws, db, "K"), cwd=tmp_path, until=slow_alone_in_flight)
    # Workers take queued jobs only: an interrupted run is not theirs until queued.
    assert worker_done(Worker.run_until_idle(db, tmp_path, "idle", "0.5")) == {}

    queued = run_cli("resume", "K", "--db", db, "--queue", cwd=tmp_path)
    assert (queued.returncode, queued.stdout.strip()) == (0, "K"), queued.stderr
    again = run_cli("resume", "K", "--db", db, "--queue", cwd=tmp_path)
    assert "queued already" in again.stdout

    events = Worker.run_until_idle(db, tmp_path, "w", "0.5")
    assert worker_done(events) == {"K": "done"}
    assert [e["takeover"] for e in of_kind(events, "run_claimed")] == [False], (
        "queued, not taken over"
    )
    assert sorted(started_ids(events)) == ["join", "slow"]
    assert cli_json("show", "K", "--db", db, cwd=tmp_path)["status"] == "done"
    done = run_cli("resume", "K", "--db", db, "--queue", cwd=tmp_path)
    assert done.returncode == 4 and "nothing for a worker to do" in done.stderr


def test_an_embedded_postgresql_starts_from_the_wheel() -> None:
    """What the fixtures fall back to when nothing answers at the test URL (a second one here,
    so this test runs even when the session uses a real server)."""
    url = pg_module._embedded_server_url()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "test"
        assert conn.execute("SHOW server_version_num").fetchone()[0] >= "180000"


def test_a_queued_run_held_by_a_terminal_waits_and_is_queued_once_on_postgres(
    pg: PgSchema,  # noqa: F811
    tmp_path: Path,
) -> None:
    from app.runs.persistence import open_persistence
    from app.runs.worker import holding_run

    ws = tmp_path / "ws"
    queue_run("T", SLOW, ws, pg.url, tmp_path)
    again = run_cli("resume", "T", "--db", pg.url, "--queue", cwd=tmp_path)
    assert "queued already" in again.stdout, again.stderr

    # Someone runs T in a terminal (holds its lock): the worker's job waits, retried each second.
    with open_persistence(pg.url) as persistence, holding_run(persistence, "T"):
        held = Worker.run_until_idle(pg.url, tmp_path, "held", "3")
    assert worker_done(held) == {} and not started_ids(held)

    free = Worker.run_until_idle(pg.url, tmp_path, "free", "3")
    assert worker_done(free) == {"T": "done"}
    assert sorted((ws / "log.txt").read_text().split()) == sorted(SLOW_STEPS)
