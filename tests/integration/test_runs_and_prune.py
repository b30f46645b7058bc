"""`planexec runs` (pages, filters, total) and `planexec prune` on a real SQLite file.

Runs are made with the CLI in this process (CliRunner): real runs of a scripted scenario,
checkpointed and journaled like any other.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli.commands import app as cli_app
from app.runs import runner
from app.runs.persistence import open_persistence
from app.runs.worker import holding_run, lock_dir
from tests.helpers import SCENARIOS, run_cli
from tools.files import LEDGER_DIR

pytestmark = pytest.mark.integration

FAST = SCENARIOS / "workers_fast.json"


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli_app, list(args))
    return result


def planexec_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def make_runs(db: str, base: Path, done: list[str], queued: list[str]) -> None:
    for thread in done:
        result = invoke(
            "run", "go", "--scenario", str(FAST), "--workspace", str(base / thread),
            "--db", db, "--thread", thread, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    for thread in queued:
        result = invoke(
            "run", "go", "--scenario", str(FAST), "--workspace", str(base / thread),
            "--db", db, "--thread", thread, "--queue",
        )  # fmt: skip
        assert result.exit_code == 0, result.output


def write_records(workspace: Path) -> list[str]:
    """The write records (tools/files.py's ledger) in a run's workspace."""
    return sorted(str(p.relative_to(workspace)) for p in workspace.glob(f"{LEDGER_DIR}/*/*"))


def rows(db: str, query: str, *args: Any) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(query, args).fetchone()[0]


@pytest.fixture(autouse=True)
def _no_planexec_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLANEXEC_DB", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_runs_pages_filters_and_says_how_many_in_all(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    make_runs(db, tmp_path, done=["d1", "d2", "d3"], queued=["q1", "q2"])

    page = planexec_json("runs", "--db", db, "--limit", "2")
    assert (page["total"], page["shown"]) == (5, 2)
    assert [r["thread_id"] for r in page["runs"]] == ["q2", "q1"]  # newest first

    everything = planexec_json("runs", "--db", db, "--all")
    assert [r["thread_id"] for r in everything["runs"]] == ["q2", "q1", "d3", "d2", "d1"]

    queued = planexec_json("runs", "--db", db, "--status", "queued")
    assert queued["total"] == 2 and {r["status"] for r in queued["runs"]} == {"queued"}
    done = planexec_json("runs", "--db", db, "--status", "done", "--status", "failed")
    assert [r["thread_id"] for r in done["runs"]] == ["d3", "d2", "d1"]

    with open_persistence(db) as persistence, holding_run(persistence, "q1"):  # a worker has it
        running = planexec_json("runs", "--db", db, "--status", "running")
    assert [r["thread_id"] for r in running["runs"]] == ["q1"]
    assert planexec_json("runs", "--db", db, "--status", "queued")["total"] == 2

    assert planexec_json("runs", "--db", db, "--since", "1h")["total"] == 5
    assert planexec_json("runs", "--db", db, "--since", "2999-01-01")["total"] == 0

    table = invoke("runs", "--db", db, "--limit", "1")
    assert "1 shown of 5" in table.stdout and "4 more" in table.stdout

    bad = invoke("runs", "--db", db, "--status", "finished")
    assert bad.exit_code == 4 and "unknown status finished" in bad.output
    bad_since = invoke("runs", "--db", db, "--since", "yesterday")
    assert bad_since.exit_code == 4 and "--since 'yesterday'" in bad_since.output


def test_a_run_killed_after_its_final_checkpoint_is_marked_finished_when_found(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "runs.sqlite")
    make_runs(db, tmp_path, done=["k"], queued=[])
    with open_persistence(db) as persistence:  # the window: final checkpoint, record not yet
        record = runner.run_record(persistence, "k")
        del record["final_status"]
        persistence.store.put(runner.RUNS_NAMESPACE, "k", record, index=False)

    listed = planexec_json("runs", "--db", db, "--status", "done")
    assert [r["thread_id"] for r in listed["runs"]] == ["k"]
    with open_persistence(db) as persistence:
        assert runner.run_record(persistence, "k")["final_status"] == "done"


def test_prune_removes_old_finished_runs_and_nothing_else(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    make_runs(db, tmp_path, done=["d1", "d2", "busy"], queued=["q1"])
    steps = "SELECT count(*) FROM store WHERE prefix LIKE 'planexec.steps.%'"
    turns = "SELECT count(*) FROM store WHERE prefix LIKE 'planexec.turns.%'"
    assert rows(db, steps) == 9
    per_run_turns = rows(db, turns) // 3
    assert per_run_turns > 0
    records = {t: write_records(tmp_path / t) for t in ("d1", "d2", "busy")}
    assert all(records.values()), records

    assert planexec_json("prune", "--older-than", "1h", "--db", db)["removed"] == 0
    assert (
        planexec_json("prune", "--older-than", "0s", "--status", "failed", "--db", db)["removed"]
        == 0
    )
    dry = planexec_json("prune", "--older-than", "0s", "--dry-run", "--db", db)
    assert sorted(dry["runs"]) == ["busy", "d1", "d2"] and dry["checkpoint_bytes"] > 0
    assert dry["journal_entries"] == 9 + 3 * per_run_turns
    assert dry["write_records"] == sum(len(r) for r in records.values())
    assert rows(db, steps) == 9 and write_records(tmp_path / "d1") == records["d1"]

    with open_persistence(db) as persistence, holding_run(persistence, "busy"):
        report = planexec_json("prune", "--older-than", "0s", "--db", db)
    assert sorted(report["runs"]) == ["d1", "d2"] and report["skipped_busy"] == ["busy"]
    assert report["journal_entries"] == 6 + 2 * per_run_turns and report["checkpoint_bytes"] > 0
    assert report["write_records"] == len(records["d1"]) + len(records["d2"])

    left = planexec_json("runs", "--db", db, "--all")
    assert sorted(r["thread_id"] for r in left["runs"]) == ["busy", "q1"]
    for thread in ("d1", "d2"):
        assert rows(db, "SELECT count(*) FROM checkpoints WHERE thread_id = ?", thread) == 0
        assert rows(db, "SELECT count(*) FROM writes WHERE thread_id = ?", thread) == 0
    assert rows(db, steps) == 3  # busy's
    assert rows(db, turns) == per_run_turns
    assert write_records(tmp_path / "d1") == write_records(tmp_path / "d2") == []
    assert write_records(tmp_path / "busy") == records["busy"]
    assert (tmp_path / "d1" / "log.txt").exists(), "prune removes records, not the files"
    assert rows(db, "SELECT count(*) FROM checkpoints WHERE thread_id = 'busy'") > 0
    assert list(lock_dir(db).iterdir()) == [], "lock files outlive their runs"

    refused = invoke("prune", "--older-than", "0s", "--status", "queued", "--db", db)
    assert refused.exit_code == 4 and "finished runs only" in refused.output
    # A number alone is not read as seconds: someone who meant 7 days lost every run.
    make_runs(db, tmp_path, done=["n1"], queued=[])
    bare = invoke("prune", "--older-than", "7", "--db", db)
    assert bare.exit_code == 4 and "a number and a unit" in bare.output
    assert planexec_json("runs", "--db", db)["total"] >= 1, "nothing was removed"


def test_runs_counts_only_done_steps_as_done() -> None:
    """`planexec runs` "steps done" counts steps that succeeded: a failed step has a result
    too, but is not done, nor is a step of the plan that has not run."""
    from app.cli.commands import _run_summary

    state = {
        "thread_id": "t",
        "status": "replan_limit",
        "plan": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        "results": {"a": {"status": "done"}, "b": {"status": "failed"}},
    }
    assert _run_summary(state)["steps"] == "1/3"


def test_prune_of_a_database_that_is_not_there_makes_none(tmp_path: Path) -> None:
    """A mistyped --db: before, prune (even --dry-run) created the database and its lock folder."""
    for extra in ((), ("--dry-run",)):
        proc = run_cli(
            "prune", "--older-than", "1d", *extra, "--db", "sqlite:///typo.sqlite", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        assert "does not exist" in proc.stdout
    assert list(tmp_path.iterdir()) == []


# found by a review of races and process deaths (2026-11-27) ----------------------------------


def test_prune_reads_a_run_again_under_its_lock_and_keeps_one_resumed_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prune listed a finished run, then took its lock and removed it, although a resume had
    made it unfinished meanwhile (it was interrupted then, and `--status failed` removed it)."""
    from app.runs import storage

    db = str(tmp_path / "runs.sqlite")
    make_runs(db, tmp_path, done=["a", "b"], queued=[])
    listed = storage.prunable

    def listed_then_resumed(persistence: Any, *args: Any) -> list[str]:
        found = listed(persistence, *args)
        record = runner.run_record(persistence, "a")  # `planexec resume a` starts now
        persistence.store.put(runner.RUNS_NAMESPACE, "a", runner._unfinished(record))
        return found

    monkeypatch.setattr(storage, "prunable", listed_then_resumed)
    with open_persistence(db) as persistence:
        report = storage.prune(persistence, older_than=0)
        assert report.runs == ["b"]
        assert runner.run_record(persistence, "a")["goal"] == "go", "the resumed run is kept"


def test_a_finished_run_whose_prune_stopped_half_way_is_never_run_again(tmp_path: Path) -> None:
    """prune removes the checkpoints, then the record: killed between, it left a finished run's
    record with no checkpoint, shown as `queued`, which `resume` (and a worker, after `resume
    --queue`) started from scratch, repeating every side effect under new keys."""
    db = str(tmp_path / "runs.sqlite")
    make_runs(db, tmp_path, done=["a"], queued=[])
    with open_persistence(db) as persistence:
        persistence.checkpointer.delete_thread("a")  # where the prune was killed
    assert planexec_json("show", "a", "--db", db)["status"] == "done"
    for args in (
        ("resume", "a"),
        ("resume", "a", "--max-tokens", "500000"),
        ("resume", "a", "--queue"),
    ):
        result = invoke(*args, "--db", db)
        assert result.exit_code == 4, result.output
        said = " ".join(result.output.split())
        assert "done" in said and "nothing" in said
        assert planexec_json("show", "a", "--db", db)["status"] == "done", "a budget unfinished it"
    with open_persistence(db) as persistence:
        assert persistence.checkpointer.get_tuple({"configurable": {"thread_id": "a"}}) is None
    assert invoke("prune", "--older-than", "0s", "--db", db).exit_code == 0
    assert invoke("show", "a", "--db", db).exit_code == 4, "the next prune finished it"


def test_a_run_recorded_but_never_queued_reads_interrupted_not_queued(tmp_path: Path) -> None:
    """`run --queue` killed between the record and the job left a run every listing called
    queued, which no worker would ever take (and `runs --status interrupted` missed)."""
    db = str(tmp_path / "runs.sqlite")
    from app.context import Context

    with open_persistence(db) as persistence:
        ctx = Context.every_role(f"scripted:{FAST}", workspace=str(tmp_path / "ws"))
        runner.submit_run(persistence, "go", ctx, "cut")  # killed before the job was made
    assert planexec_json("show", "cut", "--db", db)["status"] == "interrupted"
    interrupted = planexec_json("runs", "--db", db, "--status", "interrupted")["runs"]
    assert [r["thread_id"] for r in interrupted] == ["cut"]
    result = invoke("resume", "cut", "--queue", "--db", db)
    assert result.exit_code == 0, result.output
    assert planexec_json("show", "cut", "--db", db)["status"] == "queued"
    make_runs(db, tmp_path, done=[], queued=["q"])
    assert planexec_json("show", "q", "--db", db)["status"] == "queued"
    with closing(sqlite3.connect(db)) as conn, conn:  # a worker took the job, could not run it
        conn.execute("DELETE FROM planexec_queue WHERE thread_id = 'q'")
    assert planexec_json("show", "q", "--db", db)["status"] == "interrupted"


def test_show_says_running_while_a_process_holds_the_run(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    make_runs(db, tmp_path, done=[], queued=["q"])
    with open_persistence(db) as persistence, holding_run(persistence, "q"):
        shown = run_cli("show", "q", "--db", db, "--json", cwd=tmp_path)  # another process
    assert json.loads(shown.stdout)["status"] == "running"
    assert planexec_json("show", "q", "--db", db)["status"] == "queued"


def test_a_lock_file_that_cannot_be_removed_is_left_behind_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Releasing a run removes its lock file; in a folder made read-only meanwhile that raised
    PermissionError after the run had finished (a traceback, exit 1). The file stays, unlocked:
    the run can be taken again."""
    import os

    from app.runs import worker

    db = str(tmp_path / "runs.sqlite")
    with open_persistence(db) as persistence, worker.run_locks(persistence) as locks:
        assert locks.try_acquire("r1")

        def refuse(path: Any) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(os, "unlink", refuse)
        locks.release("r1")
        monkeypatch.undo()
        assert not locks.held("r1")
        assert locks.try_acquire("r1"), "a file left behind holds nothing"
        locks.release("r1")


def test_a_lock_taken_on_a_file_its_holder_just_removed_is_not_a_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Release unlinks the lock file while still holding it. A process that opened the file
    just before, and locks it just after, holds a lock on a file no one else can find: it must
    see that and lock the file at the path, or a third process could take the same run (a
    worker and a terminal running it at once)."""
    import os

    from app.runs import worker

    db = str(tmp_path / "runs.sqlite")
    first, second, third = (worker._FileLocks(db) for _ in range(3))
    assert first.try_acquire("t")
    real_open = os.open
    released = []

    def open_then_lose_the_race(path: Any, flags: int, *args: Any) -> int:
        fd = real_open(path, flags, *args)
        if not released:  # the holder lets go between our open and our lock
            released.append(True)
            first.release("t")
        return fd

    monkeypatch.setattr(os, "open", open_then_lose_the_race)
    assert second.try_acquire("t")
    monkeypatch.undo()
    assert not third.try_acquire("t"), "two processes would hold the run"
    second.release("t")
    assert third.try_acquire("t")
    third.release("t")
