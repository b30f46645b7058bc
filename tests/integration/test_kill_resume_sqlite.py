"""A real `planexec` process on SQLite, killed with SIGKILL mid-run, then resumed to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    fanout_args,
    finished_ids,
    of_kind,
    run_json,
    run_until_then_kill,
    slow_alone_in_flight,
)
from tests.helpers import started_ids as started

pytestmark = pytest.mark.integration


def test_demo_killed_mid_step_resumes_without_rerunning_finished_steps(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    common = ("--db", db)
    first = run_until_then_kill(
        "demo",
        "--thread",
        "k1",
        "--workspace",
        str(tmp_path / "ws"),
        *common,
        cwd=tmp_path,
        # s2 takes three executor turns; kill while it is in the middle of them.
        until=lambda ev: "s2" in started(ev),
    )
    assert finished_ids(first) == ["s1"]

    code, second = run_json("resume", "k1", *common, cwd=tmp_path)

    assert code == 0, second[-1]
    assert "s1" not in started(second), "a completed step ran again after resume"
    assert started(second)[0] == "s2"
    assert of_kind(second, "result")[0]["status"] == "done"
    assert (tmp_path / "ws" / "report.md").read_text().startswith("# Q3 2026 revenue")

    code, shown = run_json("resume", "k1", *common, cwd=tmp_path)
    assert code == 0 and started(shown) == [], "resuming a finished run must run nothing"


def test_kill_with_parallel_steps_in_flight_reruns_only_unfinished(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    ws = tmp_path / "ws"
    first = run_until_then_kill(
        *fanout_args(ws, db, "k2"), cwd=tmp_path, until=slow_alone_in_flight
    )
    assert "slow" in started(first) and "slow" not in finished_ids(first)

    code, second = run_json("resume", "k2", "--db", db, cwd=tmp_path)

    assert code == 0
    assert sorted(started(second)) == ["join", "slow"]
    assert sorted(finished_ids(second, recovered=True)) == ["after_fast", "fast", "medium"]
    log = (ws / "log.txt").read_text().split()
    # Every finished step's side effect happened once; only `slow` may have run twice.
    assert sorted(x for x in log if x != "slow") == ["after_fast", "fast", "join", "medium"]
