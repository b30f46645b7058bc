"""Ctrl-C (SIGINT) on a real `planexec run`: the steps in flight finish, no new step starts, the
process exits 130, and `planexec resume` runs only what is left."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.helpers import (
    run_cli,
    run_json,
    signal_fanout_run,
    started_ids,
)

pytestmark = pytest.mark.integration


def test_ctrl_c_lets_steps_in_flight_finish_and_resume_runs_the_rest(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    returncode, stderr = signal_fanout_run(tmp_path, db, "cc", signal.SIGINT)

    assert returncode == 130, stderr
    assert "stopping once the steps in flight finish" in stderr
    assert "Traceback" not in stderr
    shown = run_cli("show", "cc", "--db", db, "--json", cwd=tmp_path)
    state = json.loads(shown.stdout)
    assert state["status"] == "interrupted"
    assert state["results"]["slow"]["status"] == "done", "the step in flight was let finish"
    assert "join" not in state["results"], "no new step starts after Ctrl-C"

    code, resumed = run_json("resume", "cc", "--db", db, cwd=tmp_path)

    assert code == 0
    assert started_ids(resumed) == ["join"]
    log = (tmp_path / "ws" / "log.txt").read_text().split()
    assert sorted(log) == ["after_fast", "fast", "join", "medium", "slow"], "each step ran once"
