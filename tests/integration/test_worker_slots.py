"""PostgreSQL workers' slots: a dead worker's run is claimed by a worker that is busy with a run
of its own (its standby slot), and `--concurrency` runs several runs in one worker.

Runs here hold a step open until the test creates a file (tests.custom_tools:wait_for_file), so
what is asserted is an order of events, not a time: "B claimed A's run while B's own run was
still held" cannot happen if a takeover waits for a free ordinary slot. Every wait has a
deadline (WAIT); how soon a takeover happens is measured by benchmarks/workers.py.

Workers are real `planexec worker` processes (helpers in test_workers.py) with the repository on
PYTHONPATH, so they can import the test tool; each test has a throwaway schema.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, cli, of_kind, started_ids
from tests.integration.pg import PgSchema
from tests.integration.test_workers import (
    WAIT,
    pg,  # noqa: F401 - the fixture
    queue_in_process,
    run_cli,
    worker_done,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Event = dict[str, Any]


def held_scenario(path: Path, release: Path) -> Path:
    """One step, `hold`, that waits for `release` to exist, then a finish."""
    scenario = {
        "name": "held",
        "description": "tests/integration/test_worker_slots.py: one step held open by a file.",
        "goal": "Hold.",
        "tools": ["tests.custom_tools:wait_for_file"],
        "latency": {"planner": 0.01, "replanner": 0.01},
        "planner": {"steps": [{"id": "hold", "description": "Wait.", "depends_on": []}]},
        "executor": {
            "hold": [
                {"tool_calls": [{"name": "wait_for_file", "args": {"path": str(release)}}]},
                {"content": "released"},
            ]
        },
        "replanner": [{"action": "finish", "reason": "released", "response": "done"}],
    }
    path.write_text(json.dumps(scenario))
    return path


@dataclass
class SlotWorker:
    """A `planexec worker --json` process (stdout to a file) that can import the test tool."""

    proc: subprocess.Popen[str]
    out: Path

    @classmethod
    def start(cls, db: str, cwd: Path, name: str, *extra: str) -> SlotWorker:
        out = cwd / f"{name}.out"
        with out.open("w") as stdout:
            proc = subprocess.Popen(
                cli("worker", "--db", db, "--json", *extra),
                cwd=cwd, env={**clean_env(), "PYTHONPATH": str(REPO)}, stdout=stdout,
                stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        return cls(proc, out)

    def events(self) -> list[Event]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, what: str, test: Callable[[Event], bool]) -> Event:
        """The first event passing `test`, waiting for it up to WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while True:
            # Whole lines only: the last one may be half written.
            complete = self.out.read_text().rpartition("\n")[0].splitlines()
            found = [json.loads(x) for x in complete if x.startswith("{")]
            for event in found:
                if test(event):
                    return event
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {what} (exit {self.proc.poll()}); events: {found}")
            time.sleep(0.05)

    def wait_exit(self) -> None:
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker did not exit in time")
        assert self.proc.returncode == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def event_is(kind: str, thread: str, **fields: Any) -> Callable[[Event], bool]:
    """Matches `thread`'s events of this kind with these field values."""
    wanted = {"event": kind, "thread_id": thread, **fields}
    return lambda e: all(e.get(k) == v for k, v in wanted.items())


def claimed(thread: str, takeover: bool) -> Callable[[Event], bool]:
    return event_is("run_claimed", thread, takeover=takeover)


def holding(thread: str) -> Callable[[Event], bool]:
    return event_is("step_started", thread, step_id="hold")


def finished(thread: str) -> Callable[[Event], bool]:
    return event_is("finished", thread)


def position(events: list[Event], test: Callable[[Event], bool]) -> int:
    return next(i for i, e in enumerate(events) if test(e))


def test_a_dead_workers_run_is_claimed_by_a_busy_worker_without_waiting_for_its_run(
    pg: PgSchema,  # noqa: F811
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    scenario = held_scenario(tmp_path / "held.json", release)
    liveness = ("--stalled-after", "2", "--idle-exit", "2")
    workers: list[SlotWorker] = []
    try:
        # A holds X; then B holds Y. Each worker runs one run at a time (--concurrency 1).
        queue_in_process("X", "--scenario", str(scenario), "--workspace", str(tmp_path / "x"),
                         "--db", pg.url)  # fmt: skip
        a = SlotWorker.start(pg.url, tmp_path, "a", *liveness)
        workers.append(a)
        a.wait_for("A holding X", holding("X"))
        queue_in_process("Y", "--scenario", str(scenario), "--workspace", str(tmp_path / "y"),
                         "--db", pg.url)  # fmt: skip
        b = SlotWorker.start(pg.url, tmp_path, "b", *liveness)
        workers.append(b)
        b.wait_for("B holding Y", holding("Y"))

        killed_at = time.time()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        # Y is still held (the file does not exist yet), so B's ordinary slot is busy: only
        # its standby slot can claim X, after the stalled-job check retried A's job.
        taken = b.wait_for("B claiming X while Y is held", claimed("X", takeover=True))
        assert not release.exists()
        print(f"\nX claimed by B {taken['at'] - killed_at:.1f} s after A was killed")

        release.touch()
        b.wait_exit()
    finally:
        for w in workers:
            w.kill()

    events = b.events()
    assert worker_done(events) == {"X": "done", "Y": "done"}
    order = [
        position(events, claimed("Y", takeover=False)),
        position(events, holding("Y")),
        position(events, claimed("X", takeover=True)),
        position(events, finished("Y")),
    ]
    assert order == sorted(order), order
    assert taken["at"] >= killed_at
    # X's step was in flight when A died: B ran it again (at-least-once for the step in flight).
    assert started_ids([e for e in events if e.get("thread_id") == "X"]) == ["hold"]
    assert of_kind(events, "finished")[-1]["status"] == "done"
    a_events = [e for e in a.events() if e.get("thread_id")]
    assert {e["thread_id"] for e in a_events} == {"X"}, "A never saw Y"


def queue_held_runs(pg: PgSchema, tmp_path: Path, release: Path, threads: list[str]) -> None:  # noqa: F811
    """Queue a run of `held_scenario` per thread: each holds its worker until `release` exists."""
    scenario = held_scenario(tmp_path / "held.json", release)
    for thread in threads:
        queue_in_process(thread, "--scenario", str(scenario), "--workspace",
                         str(tmp_path / thread), "--db", pg.url)  # fmt: skip


def test_concurrency_runs_several_runs_in_one_worker(
    pg: PgSchema,  # noqa: F811
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    queue_held_runs(pg, tmp_path, release, ["P", "Q"])
    w = SlotWorker.start(pg.url, tmp_path, "w", "--concurrency", "2", "--idle-exit", "2")
    try:
        # Both held at once in one process: two ordinary slots.
        w.wait_for("P held", holding("P"))
        w.wait_for("Q held", holding("Q"))
        release.touch()
        w.wait_exit()
    finally:
        w.kill()
    events = w.events()
    assert worker_done(events) == {"P": "done", "Q": "done"}
    assert not [e for e in of_kind(events, "run_claimed") if e["takeover"]]
    # Each JSON line whole (events come from two threads), each run's events in run order.
    for thread in ("P", "Q"):
        mine = [e["event"] for e in events if e.get("thread_id") == thread]
        assert mine[0] == "run_claimed" and mine[-1] == "finished", mine


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--heartbeat", "3", "--stalled-after", "5"), "--heartbeat (3.0 s) must be at most half"),
        (("--stalled-check", "0"), "must be more than 0 seconds"),
    ],
)
def test_worker_refuses_liveness_settings_that_would_take_live_workers_for_dead(
    tmp_path: Path, flags: tuple[str, ...], says: str
) -> None:
    proc = run_cli("worker", "--db", str(tmp_path / "runs.sqlite"), *flags, cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert says in proc.stderr
    assert not (tmp_path / "runs.sqlite").exists(), "refused before opening the database"


def test_concurrency_on_sqlite_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    proc = run_cli(
        "worker", "--db", str(tmp_path / "runs.sqlite"), "--concurrency", "2", cwd=tmp_path
    )
    assert proc.returncode == 4, proc.stderr
    assert "start more worker processes" in proc.stderr


def test_two_slots_of_one_worker_never_hold_the_same_run(pg: PgSchema) -> None:  # noqa: F811
    """Session advisory locks are re-entrant on the server: the worker must refuse the second
    acquire itself (its standby slot may claim a job of its own, retried after a late
    heartbeat)."""
    from app.runs.persistence import Persistence
    from app.runs.worker import run_locks

    persistence = Persistence(checkpointer=None, store=None, url=pg.url)  # type: ignore[arg-type]
    with run_locks(persistence) as mine, run_locks(persistence) as other:
        assert mine.try_acquire("T")
        assert not mine.try_acquire("T"), "a second slot of the same worker took the run"
        assert not other.try_acquire("T")
        mine.release("T")
        assert other.try_acquire("T"), "one release frees the run for everyone"
        assert not mine.try_acquire("T")
        other.release("T")


def test_max_runs_is_the_number_of_runs_a_worker_claims_not_only_finishes(
    pg: PgSchema,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`--max-runs 1` with two slots: the second slot's job is handed back (retried for another
    worker), never started here, so the worker ends after one run instead of two."""
    release = tmp_path / "release"
    queue_held_runs(pg, tmp_path, release, ["P", "Q"])
    w = SlotWorker.start(pg.url, tmp_path, "w", "--concurrency", "2", "--max-runs", "1")
    try:
        first = w.wait_for("a run held", lambda e: holding("P")(e) or holding("Q")(e))
        other = "Q" if first["thread_id"] == "P" else "P"
        # The other run's job was taken by the second slot and handed back (retried), or,
        # wrongly, claimed: either ends this wait.
        deadline = time.monotonic() + WAIT
        query = f'SELECT max(attempts) FROM "{pg.name}".procrastinate_jobs WHERE args->>%s = %s'
        with pg.connect() as conn:
            while not conn.execute(query, ("thread_id", other)).fetchone()[0]:
                if any(claimed(other, False)(e) for e in w.events()):
                    break
                assert time.monotonic() < deadline, f"{other}'s job was never taken"
                time.sleep(0.05)
        release.touch()
        w.wait_exit()
    finally:
        w.kill()
    events = w.events()
    assert worker_done(events) == {first["thread_id"]: "done"}
    assert [e["thread_id"] for e in of_kind(events, "run_claimed")] == [first["thread_id"]]
