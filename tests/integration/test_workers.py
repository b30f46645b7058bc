"""`planexec worker` processes sharing one database: takeover after SIGKILL, and many runs split
across two workers, on PostgreSQL (advisory locks) and on one SQLite file (flock).

Every PostgreSQL test has a throwaway schema of its own (tests/integration/pg.py). Workers are
real `python -m app.cli.commands worker` processes; their JSON lines go to files (or, for the
worker that is killed, through a pipe read by a thread), so no process blocks on a full pipe and
every wait has a timeout.

The tests at the end each hold a bug found while writing these tests, since fixed: a foreground
run taken over by a worker, concurrent first setup on PostgreSQL, a queued run that cannot start
stopping the worker, relative paths in queued runs, and thread ids that are not file names.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from typer.testing import CliRunner

from app.cli.commands import app as cli_app
from app.runs.persistence import open_persistence
from tests.helpers import SCENARIOS, clean_env, cli, finished_ids, of_kind, started_ids
from tests.integration.pg import PgSchema, temporary_schema

pytestmark = pytest.mark.integration

SLOW = SCENARIOS / "workers_slow.json"  # quick, after_quick finish while slow (2 s) runs; join
FAST = SCENARIOS / "workers_fast.json"  # left, right, join: no latency
FAST_STEPS = ["join", "left", "right"]
SLOW_STEPS = {"quick", "slow", "after_quick", "join"}
N_RUNS = 20
WAIT = 45.0  # seconds any one subprocess may take before the test fails


@pytest.fixture
def pg() -> Iterator[PgSchema]:
    with temporary_schema() as schema:
        yield schema


@pytest.fixture(autouse=True)
def _no_planexec_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs queued in-process build their Context here: keep the developer's PLANEXEC_* out."""
    for name in list(os.environ):
        if name.startswith(("PLANEXEC_", "OPENAI_")):
            monkeypatch.delenv(name)


# --- processes ----------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(*args), cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )


def cli_json(*args: str, cwd: Path) -> Any:
    """A CLI command that prints one JSON document (`runs --json`, `show --json`)."""
    proc = run_cli(*args, "--json", cwd=cwd)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def queue_run(thread: str, scenario: Path, workspace: Path, db: str, cwd: Path) -> None:
    """`planexec run go --queue` as its own process."""
    proc = run_cli(
        "run", "go", "--scenario", str(scenario), "--workspace", str(workspace),
        "--db", db, "--queue", "--thread", thread, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == thread


def queue_in_process(thread: str, *args: str) -> None:
    """`planexec run go ARGS --queue --thread THREAD`, invoked in this process (CliRunner):
    twenty subprocesses would spend ~20 s importing Python on a small CI machine."""
    result = CliRunner().invoke(cli_app, ["run", "go", *args, "--queue", "--thread", thread])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == thread


def queue_runs_in_process(threads: list[str], scenario: Path, base: Path, db: str) -> None:
    """One run per thread, each with its own workspace under `base`."""
    for thread in threads:
        queue_in_process(
            thread, "--scenario", str(scenario), "--workspace", str(base / thread), "--db", db
        )


@dataclass
class Worker:
    """A `planexec worker --json` process whose stdout and stderr go to files."""

    proc: subprocess.Popen[str]
    out: Path
    err: Path
    started: float

    @classmethod
    def start(cls, db: str, cwd: Path, name: str, *extra: str) -> Worker:
        out, err = cwd / f"{name}.out", cwd / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                cli("worker", "--db", db, "--json", *extra),
                cwd=cwd, env=clean_env(), stdout=stdout, stderr=stderr, text=True,
            )  # fmt: skip
        return cls(proc, out, err, time.monotonic())

    @classmethod
    def run_until_idle(
        cls, db: str, cwd: Path, name: str, idle_exit: str, *extra: str
    ) -> list[dict[str, Any]]:
        """Start a worker, let it exit by itself once idle, check it exited cleanly; its events."""
        worker = cls.start(db, cwd, name, "--idle-exit", idle_exit, *extra)
        worker.wait()  # kills it and fails the test if it does not exit in time
        worker.check_clean_exit()
        return worker.events()

    def wait(self, timeout: float = WAIT) -> float:
        """Wait for the worker to exit by itself; its exit time (monotonic)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail(f"worker did not exit within {timeout} s:\n{self.err.read_text()}")
        return time.monotonic()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def events(self) -> list[dict[str, Any]]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def check_clean_exit(self) -> None:
        stderr = self.err.read_text()
        assert self.proc.returncode == 0, f"exit {self.proc.returncode}\n{stderr}"
        assert "Traceback" not in stderr, stderr


def worker_done(events: list[dict[str, Any]]) -> dict[str, str]:
    """Thread id -> final status, from the worker's last line."""
    (summary,) = of_kind(events, "worker_done")
    return dict(summary["runs"])


def for_thread(events: list[dict[str, Any]], thread: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("thread_id") == thread]


class LineReader:
    """Reads a process's stdout on a thread, so waiting for the next JSON line can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next_event(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line, None at end of output; fails when the deadline passes first."""
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no output from the worker in time")
            if line is None or line.startswith("{"):
                return json.loads(line) if line else None


# --- 1. takeover after SIGKILL ---------------------------------------------------------------


def test_worker_killed_mid_run_is_taken_over_without_rerunning_finished_steps(
    pg: PgSchema, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    queue_run("T", SLOW, ws, pg.url, tmp_path)

    # Worker A: read its events until quick and after_quick are done while slow is running.
    a = subprocess.Popen(
        cli("worker", "--db", pg.url, "--json"),
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    first: list[dict[str, Any]] = []
    try:
        assert a.stdout is not None
        reader = LineReader(a.stdout)
        deadline = time.monotonic() + WAIT
        while not {"quick", "after_quick"} <= set(finished_ids(first)):
            event = reader.next_event(deadline)
            assert event is not None, f"worker A ended before the kill point: {first}"
            first.append(event)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(timeout=10)
    assert a.returncode == -signal.SIGKILL
    assert {e["thread_id"] for e in first} == {"T"}
    assert "slow" in started_ids(first) and "slow" not in finished_ids(first), (
        "the kill must come while slow is still running"
    )
    done_by_a = set(finished_ids(first))
    assert done_by_a == {"quick", "after_quick"}

    # Worker B: A's heartbeat stops with it; 2 s later B retries A's job (procrastinate's
    # stalled-job listing), takes the run over from its journal and exits once idle.
    second = Worker.run_until_idle(pg.url, tmp_path, "b", "6", "--stalled-after", "2")
    # How soon is measured in benchmarks/workers.py (max_takeover_s), not asserted here.

    assert worker_done(second) == {"T": "done"}
    assert {e["thread_id"] for e in second if e["event"] != "worker_done"} == {"T"}
    assert sorted(started_ids(second)) == ["join", "slow"]
    for step_id in done_by_a:  # finished before the kill: only recovered from the journal
        events = [e for e in second if e.get("step_id") == step_id]
        assert [(e["event"], e["recovered"]) for e in events] == [("step_finished", True)], events
    assert sorted(finished_ids(second, recovered=False)) == ["join", "slow"]
    assert of_kind(second, "finished")[-1]["status"] == "done"

    shown = cli_json("show", "T", "--db", pg.url, cwd=tmp_path)
    assert shown["status"] == "done"
    assert {s["id"] for s in shown["plan"]} == SLOW_STEPS
    for step_id in SLOW_STEPS:
        assert shown["results"][step_id]["status"] == "done", shown["results"][step_id]
    for step_id in done_by_a:
        assert shown["results"][step_id]["attempts"] == 1, shown["results"][step_id]

    # Each finished step's side effect happened once; only slow (in flight at the kill) may
    # have written before A died and again under B.
    log = (ws / "log.txt").read_text().split()
    assert sorted(x for x in log if x != "slow") == ["after_quick", "join", "quick"], log
    assert 1 <= log.count("slow") <= 2, log


# --- 2 and 3. twenty runs, two workers -------------------------------------------------------


def split_twenty_runs(db: str, tmp_path: Path) -> float:
    """Queue 20 runs, run two workers at once until both are idle for 3 s, check the split.
    Returns the wall time from starting the workers to both having exited."""
    threads = [f"r{i:02d}" for i in range(N_RUNS)]
    queue_runs_in_process(threads, FAST, tmp_path / "ws", db)

    t0, t0_wall = time.monotonic(), time.time()
    workers = [Worker.start(db, tmp_path, name, "--idle-exit", "3") for name in ("w1", "w2")]
    try:
        ended = max(w.wait() for w in workers)
    finally:
        for w in workers:
            w.kill()
    wall = ended - t0
    for w in workers:
        w.check_clean_exit()
    outputs = [w.events() for w in workers]

    done = [worker_done(events) for events in outputs]
    assert all(done), f"a worker did no run: {done}"
    assert not set(done[0]) & set(done[1]), f"runs finished by both workers: {done}"
    assert set(done[0]) | set(done[1]) == set(threads)
    assert set(done[0].values()) | set(done[1].values()) == {"done"}
    # No thread has a started step in both workers' output, and no worker emitted events for a
    # thread it did not finish.
    for events, mine in zip(outputs, done, strict=True):
        assert {e["thread_id"] for e in of_kind(events, "step_started")} == set(mine)
        assert {e["thread_id"] for e in events if "thread_id" in e} == set(mine)
        for thread in mine:
            assert sorted(started_ids(for_thread(events, thread))) == FAST_STEPS

    runs = cli_json("runs", "--db", db, cwd=tmp_path)["runs"]
    assert sorted(r["thread_id"] for r in runs) == threads
    for r in runs:
        assert (r["status"], r["steps"]) == ("done", "3/3"), r
    # Each run wrote to its own workspace, each of its steps once.
    for thread in threads:
        assert sorted((tmp_path / "ws" / thread / "log.txt").read_text().split()) == FAST_STEPS
    busy = max(e["at"] for events in outputs for e in of_kind(events, "finished")) - t0_wall
    print(
        f"\n{N_RUNS} runs on 2 workers ({'postgres' if '://' in db else 'sqlite'}): "
        f"last run finished {busy:.1f} s after the workers were started, both exited after "
        f"{wall:.1f} s (3 s idle-exit); split {len(done[0])}/{len(done[1])}"
    )
    return wall


def test_twenty_runs_split_across_two_workers_on_postgres(pg: PgSchema, tmp_path: Path) -> None:
    split_twenty_runs(pg.url, tmp_path)


def test_twenty_runs_split_across_two_workers_on_one_sqlite_file(tmp_path: Path) -> None:
    split_twenty_runs(str(tmp_path / "runs.sqlite"), tmp_path)


# --- bugs found while writing these tests, fixed: each test keeps them fixed --------------------


def test_worker_leaves_alone_a_run_that_a_foreground_planexec_run_is_executing(
    pg: PgSchema, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    with open_persistence(pg.url):
        pass  # the tables exist before the two processes start (see the next test for why)
    # The worker is polling by the time the foreground run has its plan; slow keeps that run
    # going for ~2 s more, far longer than the worker's 0.5 s poll.
    worker = Worker.start(pg.url, tmp_path, "w", "--idle-exit", "2")
    try:
        fg = run_cli(
            "run", "go", "--scenario", str(SLOW), "--workspace", str(ws), "--db", pg.url,
            "--thread", "FG", "--json", cwd=tmp_path,
        )  # fmt: skip
        worker.wait()
    finally:
        worker.kill()
    assert fg.returncode == 0, fg.stderr
    worker.check_clean_exit()
    events = worker.events()

    log = (ws / "log.txt").read_text().split()
    assert worker_done(events) == {}, "a worker took over a run its own process was executing"
    assert [e for e in events if "thread_id" in e] == []
    assert sorted(log) == sorted(SLOW_STEPS), f"a step ran twice: {log}"


def test_two_workers_started_at_once_on_a_new_database_both_start(
    pg: PgSchema, tmp_path: Path
) -> None:
    # Make the race certain instead of likely: hold both workers' setup() at its first read of
    # the migrations table, then let them go at the same moment.
    with pg.connect() as conn, pg.connect() as watch:
        conn.execute(f'CREATE TABLE "{pg.name}".checkpoint_migrations (v INTEGER PRIMARY KEY)')
        workers: list[Worker] = []
        try:
            with conn.transaction():
                conn.execute(f'LOCK TABLE "{pg.name}".checkpoint_migrations')
                workers = [
                    Worker.start(pg.url, tmp_path, name, "--idle-exit", "0.5")
                    for name in ("w1", "w2")
                ]
                deadline = time.monotonic() + WAIT
                while waiting_on_a_lock(watch, pg.name) < 2:
                    assert time.monotonic() < deadline, "the workers never reached setup()"
                    time.sleep(0.05)
            for w in workers:
                w.wait()
        finally:
            for w in workers:
                w.kill()
    for w in workers:
        w.check_clean_exit()
        assert worker_done(w.events()) == {}


def waiting_on_a_lock(conn: Any, application_name: str) -> int:
    """Sessions of the CLI processes (the --db URL names them) waiting for a lock. `conn` must
    be outside a transaction: pg_stat_activity is read once per transaction."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = %s AND wait_event_type = 'Lock'",
        (application_name,),
    ).fetchone()
    return row[0]


def test_sqlite_worker_runs_a_thread_id_with_a_slash(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    queue_runs_in_process(["team/a"], FAST, tmp_path / "ws", db)

    events = Worker.run_until_idle(db, tmp_path, "w", "1")
    assert worker_done(events) == {"team/a": "done"}


def test_a_queued_run_that_cannot_start_does_not_stop_the_worker(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    gone = tmp_path / "gone.json"
    shutil.copy(FAST, gone)
    queue_runs_in_process(["broken"], gone, tmp_path / "ws", db)
    gone.unlink()
    queue_runs_in_process(["good"], FAST, tmp_path / "ws", db)

    events = Worker.run_until_idle(db, tmp_path, "w", "0.5")
    runs = worker_done(events)
    assert runs.get("good") == "done", runs
    assert runs.get("broken") != "done", runs


def test_relative_paths_of_a_queued_run_are_those_of_where_it_was_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    shutil.copy(FAST, here / "fast.json")
    db = str(tmp_path / "runs.sqlite")
    monkeypatch.chdir(here)
    queue_in_process("rel", "--scenario", "fast.json", "--workspace", "ws", "--db", db)

    events = Worker.run_until_idle(db, elsewhere, "w", "0.5")
    assert worker_done(events) == {"rel": "done"}
    assert sorted((here / "ws" / "log.txt").read_text().split()) == FAST_STEPS
    assert not (elsewhere / "ws").exists()


def test_a_queued_run_that_pauses_for_approval_is_left_paused_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    """A run queued with --approve plans, then waits for a person: for the worker that is an
    end (status paused), not a stop to hand to another worker or an error that ends it."""
    db = str(tmp_path / "runs.sqlite")
    queue_in_process("p", "--scenario", str(FAST), "--workspace", str(tmp_path / "p"),
                     "--db", db, "--approve")  # fmt: skip
    queue_runs_in_process(["good"], FAST, tmp_path / "ws", db)

    events = Worker.run_until_idle(db, tmp_path, "w", "0.5")
    assert worker_done(events) == {"p": "paused", "good": "done"}
    assert not started_ids(for_thread(events, "p")), "no step runs before the plan is approved"
    shown = cli_json("show", "p", "--db", db, cwd=tmp_path)
    assert shown["status"] == "paused"
