"""`planexec run --approve` without a terminal, answered later with `planexec approve`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.runs.demo import prepare_workspace
from tests.helpers import clean_env, instant_demo, of_kind, run_cli, run_json

pytestmark = pytest.mark.integration

PAUSED = 5


def start_paused(
    tmp_path: Path, thread: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, list[dict]]:
    """`planexec run --approve --json` on the instant demo, in tmp_path's runs.sqlite."""
    db = str(tmp_path / "runs.sqlite")
    scenario = str(instant_demo(tmp_path))
    args = ("run", "g", "--scenario", scenario, "--approve", "--db", db, "--thread", thread)
    proc = run_cli(*args, *extra, "--json", cwd=tmp_path, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_paused_run_is_answered_from_the_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    start = (
        "run",
        "revenue",
        "--scenario",
        str(instant_demo(tmp_path)),
        "--approve",
        "--db",
        db,
        "--workspace",
        str(tmp_path / "ws"),
    )
    # The demo needs its database; the instant copy plays the same steps.
    shop = prepare_workspace(tmp_path / "ws")
    code, events = run_json(*start, "--sql-database", str(shop), "--thread", "ap", cwd=tmp_path)
    assert code == PAUSED
    assert of_kind(events, "result")[0]["status"] == "paused"
    assert not of_kind(events, "step_started")

    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(
        "- {id: a, description: x, depends_on: [b]}\n- {id: b, description: y, depends_on: [a]}\n"
    )
    code, events = run_json("approve", "ap", "--edit", str(cycle), "--db", db, cwd=tmp_path)
    assert code == PAUSED
    assert "a -> b -> a" in of_kind(events, "result")[0]["approval_request"]["error"]

    first = of_kind(events, "result")[0]["approval_request"]["revision"]
    code, events = run_json("approve", "ap", "--revision", first, "--db", db, cwd=tmp_path)
    assert code == PAUSED, "the demo's revision asks again"
    second = of_kind(events, "result")[0]["approval_request"]["revision"]
    assert of_kind(events, "paused")[-1]["revision"] == second != first

    # The first plan's answer again (a second person, a retried command): nothing is answered.
    code, events = run_json("approve", "ap", "--revision", first, "--db", db, cwd=tmp_path)
    assert code == PAUSED and not of_kind(events, "step_started")
    assert f"plan revision '{first}'" in of_kind(events, "result")[0]["approval_request"]["error"]
    shown = run_cli("show", "ap", "--db", db, cwd=tmp_path)
    assert f"planexec approve ap --revision {second}" in " ".join(shown.stdout.split())

    code, events = run_json("approve", "ap", "--revision", second, "--db", db, cwd=tmp_path)
    assert code == 0 and of_kind(events, "result")[0]["status"] == "done"
    assert (tmp_path / "ws" / "report.md").exists()


def test_an_alias_bomb_edit_is_refused_and_the_run_stays_paused(tmp_path: Path) -> None:
    from tests.unit.test_steps_file import ALIAS_BOMB

    code, _ = start_paused(tmp_path, "bomb")
    assert code == PAUSED
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    db = str(tmp_path / "runs.sqlite")
    size = os.path.getsize(db)
    proc = run_cli("approve", "bomb", "--edit", str(bomb), "--db", db, cwd=tmp_path, timeout=30)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "anchors and aliases" in proc.stdout + proc.stderr
    assert os.path.getsize(db) < size + 100_000  # nothing expanded into the checkpoint
    code, events = run_json("approve", "bomb", "--reject", "no", "--db", db, cwd=tmp_path)
    assert of_kind(events, "result")[0]["status"] == "rejected"  # it stayed paused, answerable


def test_rejected_run_exits_1_and_stays_over(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    code, _ = start_paused(tmp_path, "rj")
    assert code == PAUSED
    # Two answers at once is a usage error, not one of them picked silently: the run stays
    # paused (the reject below still answers it).
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps([{"id": "s1", "description": "Look.", "depends_on": []}]))
    both = run_cli("approve", "rj", "--edit", str(edit), "--reject", "x", "--db", db, cwd=tmp_path)
    assert both.returncode == 4 and "give --edit or --reject, not both" in both.stderr
    code, events = run_json("approve", "rj", "--reject", "too costly", "--db", db, cwd=tmp_path)
    assert code == 1
    assert of_kind(events, "result")[0]["reason"] == "plan rejected: too costly"
    code, resumed = run_json("resume", "rj", "--db", db, cwd=tmp_path)
    # Resuming a finished run runs nothing and reports its outcome again (rejected: exit 1).
    assert code == 1 and not of_kind(resumed, "step_started")


def test_runs_shows_a_paused_run_as_paused(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    start_paused(tmp_path, "p")
    out = run_cli("runs", "--db", db, "--json", cwd=tmp_path)
    [run] = json.loads(out.stdout)["runs"]
    assert (run["thread_id"], run["status"]) == ("p", "paused")
    resume = run_cli("resume", "p", "--db", db, cwd=tmp_path)
    assert resume.returncode == 4 and "planexec approve p" in resume.stderr.replace("\n", " ")
    # Nor can a worker take it: `resume --queue` refuses it too, and queues nothing.
    queued = run_cli("resume", "p", "--db", db, "--queue", cwd=tmp_path)
    assert queued.returncode == 4, queued.stdout
    assert "planexec approve p" in queued.stderr.replace("\n", " ")
    assert not queued.stdout.strip()


def test_approve_without_the_models_key_is_refused_and_the_run_stays_paused(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "runs.sqlite")
    with_key = {**clean_env(), "OPENAI_API_KEY": "sk-not-used-the-planner-is-scripted"}
    code, _ = start_paused(tmp_path, "k", "--executor-model", "openai:gpt-4o-mini", env=with_key)
    assert code == PAUSED

    answer = run_cli("approve", "k", "--db", db, cwd=tmp_path)

    assert answer.returncode == 4
    assert "OPENAI_API_KEY" in answer.stderr.replace("\n", " ")
    code, events = run_json("approve", "k", "--reject", "", "--db", db, cwd=tmp_path)
    assert code == 1, "the run was still paused, so it can still be answered"
    assert of_kind(events, "result")[0]["status"] == "rejected"


def test_run_with_the_demo_scenario_gets_the_demo_database(tmp_path: Path) -> None:
    code, events = run_json(
        "run",
        "any goal",
        "--scenario",
        "demo",
        "--db",
        "memory://",
        "--workspace",
        str(tmp_path / "ws"),
        cwd=tmp_path,
    )
    assert code == 0, of_kind(events, "result")
    assert (tmp_path / "ws-shop.sqlite").exists() and (tmp_path / "ws" / "report.md").exists()


def test_approve_with_stdin_closed_pauses_rather_than_crashing(tmp_path: Path) -> None:
    """CI and service managers may start planexec with no standard input at all."""
    db = str(tmp_path / "runs.sqlite")
    scenario = str(instant_demo(tmp_path))
    args = ("run", "g", "--scenario", scenario, "--approve", "--db", db)
    proc = run_cli(*args, cwd=tmp_path, preexec_fn=lambda: os.close(0))
    assert proc.returncode == PAUSED, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_at_a_terminal_asks_and_goes_on_with_each_answer(tmp_path: Path) -> None:
    """`planexec run --approve` with a terminal on standard input asks at each pause: the plan,
    then the demo's revision; the answers go to the run, which ends as the last one says."""
    import pty
    import subprocess
    import threading
    import time

    from tests.helpers import cli

    db = str(tmp_path / "runs.sqlite")
    args = ("run", "g", "--scenario", str(instant_demo(tmp_path)), "--approve", "--db", db)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        cli(*args, "--thread", "tty"),
        cwd=tmp_path,
        env=clean_env(),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    os.close(terminal)
    out = bytearray()

    def read() -> None:
        for chunk in iter(proc.stdout.read1, b""):
            out.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def answer_when_asked(prompt: bytes, count: int, reply: bytes) -> None:
        deadline = time.monotonic() + 60
        while out.count(prompt) < count:
            assert time.monotonic() < deadline, f"no prompt {prompt!r}; output:\n{out.decode()}"
            assert proc.poll() is None, f"exited {proc.returncode}; output:\n{out.decode()}"
            time.sleep(0.05)
        os.write(controller, reply)

    try:
        answer_when_asked(b"approve, edit or reject?", 1, b"a\n")  # the plan
        answer_when_asked(b"approve, edit or reject?", 2, b"r\n")  # the revision
        answer_when_asked(b"reason", 1, b"enough\n")
        assert proc.wait(timeout=60) == 1, out.decode()
    finally:
        proc.kill()
        os.close(controller)
    reader.join(timeout=10)
    shown = run_cli("show", "tty", "--db", db, "--json", cwd=tmp_path)
    state = json.loads(shown.stdout)
    assert state["status"] == "rejected" and state["reason"] == "plan rejected: enough"
    assert [h["action"] for h in state["history"]] == ["approved", "replan", "rejected"]
    assert out.count(b"plan revision ") == 2, "each pause shows the revision it asks about"


def test_an_edit_holding_text_no_checkpoint_can_keep_is_stored_as_u_fffd(tmp_path: Path) -> None:
    """An edit's JSON (a file here, a server caller's body there) may hold "\\u0000" or
    "\\ud800": the checkpoint write of the edited plan failed, and with it every resume."""
    db = str(tmp_path / "runs.sqlite")
    scenario = tmp_path / "one.json"
    scenario.write_text(json.dumps({
        "name": "one", "goal": "g", "tools": [],
        "planner": {"steps": [{"id": "s1", "description": "first"}]},
        "executor": {"s2": [{"content": "two"}]},
        "replanner": [{"action": "finish", "reason": "done", "response": "ok"}],
    }))  # fmt: skip
    args = ("run", "g", "--scenario", str(scenario), "--approve", "--db", db, "--thread", "nul")
    assert run_cli(*args, "--json", cwd=tmp_path).returncode == PAUSED
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps([{"id": "s2", "description": "two \x00 \ud800"}]), "utf-8")
    code, events = run_json("approve", "nul", "--edit", str(edit), "--db", db, cwd=tmp_path)
    assert code == 0, of_kind(events, "result")
    state = json.loads(run_cli("show", "nul", "--db", db, "--json", cwd=tmp_path).stdout)
    assert state["status"] == "done" and state["plan"][0]["description"] == "two \ufffd \ufffd"
