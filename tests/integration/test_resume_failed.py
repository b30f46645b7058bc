"""A run that failed goes on with `planexec resume` from the node that failed, keeping what was
done before it: a replanner whose endpoint was down, a step that could not run, a planner whose
answers could not be used. Real `planexec` processes, a real SQLite database; the scenario is
fixed between the runs, as a user fixes a key, an endpoint or a prompt."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import clean_env, finished_ids, run_cli, run_json, started_ids

pytestmark = pytest.mark.integration

FINISH = {"action": "finish", "reason": "done", "response": "Both logged."}
LOG = {"path": "log.txt", "append": True}


def _script(replanner: list, executor_s2: list | None = None, planner: dict | None = None) -> dict:
    log = lambda line: {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": line}}]}  # noqa: E731
    return {
        "name": "resume_failed",
        "goal": "Log two lines.",
        "tools": ["write_file"],
        "planner": planner
        or {
            "steps": [
                {"id": "s1", "description": "Log s1."},
                {"id": "s2", "description": "Log s2.", "depends_on": ["s1"]},
            ]
        },
        "executor": {
            "s1": [log("s1\n"), {"content": "logged s1"}],
            "s2": [log("s2\n"), {"content": "logged s2"}] if executor_s2 is None else executor_s2,
        },
        "replanner": replanner,
    }


def _run(tmp_path: Path, script: dict) -> tuple[Path, str, int, list[dict]]:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(script), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    code, events = run_json(
        "run", "go", "--scenario", str(scenario), "--thread", "f1", "--db", db,
        "--workspace", str(tmp_path / "ws"), "--plan-format", "json", cwd=tmp_path,
    )  # fmt: skip
    return scenario, db, code, events


def _resume(tmp_path: Path, db: str) -> tuple[int, list[dict], dict]:
    code, events = run_json("resume", "f1", "--db", db, cwd=tmp_path)
    shown = json.loads(run_cli("show", "f1", "--db", db, "--json", cwd=tmp_path).stdout)
    return code, events, shown


def test_a_run_whose_replanner_failed_goes_on_with_its_steps_kept(tmp_path: Path) -> None:
    bad = {"attempts": [{"raw": "not json"}] * 3}
    scenario, db, code, events = _run(tmp_path, _script([bad]))
    assert code == 1 and "replanner output invalid after 3 attempts" in events[-1]["reason"]
    # Workers do not retry failures: --queue refuses, saying what does.
    queued = run_cli("resume", "f1", "--db", db, "--queue", cwd=tmp_path)
    assert queued.returncode == 4
    assert f"`planexec resume f1 --db {db}` (no --queue)" in " ".join(queued.stderr.split())
    scenario.write_text(json.dumps(_script([FINISH])), encoding="utf-8")

    code, events, shown = _resume(tmp_path, db)
    assert code == 0, events[-1]
    assert started_ids(events) == [], "the steps that ran are not run again"
    assert shown["status"] == "done" and shown["response"] == "Both logged."
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"
    # The three unusable answers were paid for: still counted, beside the one that finished.
    assert shown["usage"]["replanner"]["calls"] == 4
    assert shown["replanner_calls"] == 1, "the failed review is not counted as a review"


def test_a_run_whose_step_could_not_run_goes_on_from_that_step(tmp_path: Path) -> None:
    """s2's scripted turns are missing (a scenario bug: the run fails, as a missing key or
    endpoint would); the scenario is fixed and the run resumed: s1 is not run again."""
    broken = _script([FINISH], executor_s2=[])
    scenario, db, code, events = _run(tmp_path, broken)
    assert code == 1 and "s1" in finished_ids(events)
    scenario.write_text(json.dumps(_script([FINISH])), encoding="utf-8")

    code, events, shown = _resume(tmp_path, db)
    assert code == 0, events[-1]
    assert "s1" not in started_ids(events)
    assert shown["status"] == "done"
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"


def test_a_step_that_failed_after_its_tool_call_goes_on_without_making_it_again(
    tmp_path: Path,
) -> None:
    """s2 wrote its line, then had no next turn (the run failed after the side effect). The
    resume continues s2 from its journaled turns: the write is not made again, and the paid
    turn and the call are counted once (a --max-tool-calls budget sees 2 calls, not 3)."""
    log_s2 = {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": "s2\n"}}]}
    scenario, db, code, events = _run(tmp_path, _script([FINISH], executor_s2=[log_s2]))
    assert code == 1 and (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"
    scenario.write_text(json.dumps(_script([FINISH])), encoding="utf-8")

    code, events, shown = _resume(tmp_path, db)
    assert code == 0, events[-1]
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n", "s2's write made twice"
    assert shown["results"]["s2"]["tool_calls_made"] == 1
    assert shown["results"]["s2"]["executions"] == 2
    # s1: 2 turns, s2: its first turn (paid before the failure) and its answer.
    assert shown["usage"]["executor"]["calls"] == 4


def test_a_planner_that_failed_after_it_was_paid_is_not_planned_afresh(tmp_path: Path) -> None:
    """Its answers were paid for (and steps may have run while it streamed): a fresh plan
    would count none of that, and would run those steps again. Refused, saying what to do."""
    cycle = {
        "steps": [
            {"id": "a", "description": "A.", "depends_on": ["b"]},
            {"id": "b", "description": "B.", "depends_on": ["a"]},
        ]
    }
    scenario, db, code, _ = _run(tmp_path, _script([FINISH], planner={"attempts": [cycle] * 3}))
    assert code == 1
    proc = run_cli("resume", "f1", "--db", db, cwd=tmp_path)
    assert proc.returncode == 4
    assert "failed in its planner after paying for it" in " ".join(proc.stderr.split())
    # The live view's hint says so too, rather than "fix it and resume".
    live = run_cli(
        "run", "go", "--scenario", str(scenario), "--thread", "f2", "--db", db, "--workspace",
        str(tmp_path / "ws"), "--plan-format", "json", cwd=tmp_path,
        env={**clean_env(), "COLUMNS": "400"},
    )  # fmt: skip
    said = " ".join((live.stdout + live.stderr).split())
    assert live.returncode == 1 and "Start it again as a new run" in said
    assert "Fix what failed" not in said


def test_a_planner_whose_endpoint_was_down_plans_once_it_is_back(tmp_path: Path) -> None:
    """The real case, over HTTP with the real langchain-openai client: nothing answers at
    OPENAI_BASE_URL, the planner fails (nothing paid, nothing run); the scenario server comes
    up on that port and `planexec resume` plans and finishes the run."""
    from app.scripted.server import serving

    with socket.socket() as probe:  # a free port, closed: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_script([FINISH])), encoding="utf-8")
    env = {**clean_env(), "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    db = str(tmp_path / "runs.sqlite")
    proc = run_cli(
        "run", "go", "--planner-model", "openai:gpt-4o", "--executor-model", "openai:gpt-4o-mini",
        "--replanner-model", "openai:gpt-4o", "--tools", "write_file", "--thread", "f1",
        "--db", db, "--workspace", str(tmp_path / "ws"), "--json", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 1 and "cannot be reached" in proc.stdout, proc.stdout[-500:]

    with serving(str(scenario), port=port):
        proc = run_cli("resume", "f1", "--db", db, "--json", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"


def test_a_run_that_ended_otherwise_is_not_reopened(tmp_path: Path) -> None:
    scenario, db, code, _ = _run(tmp_path, _script([FINISH]))
    assert code == 0
    code, events, shown = _resume(tmp_path, db)
    assert code == 0 and started_ids(events) == [] and shown["status"] == "done"
    assert shown["usage"]["replanner"]["calls"] == 1


def test_the_live_view_says_how_to_go_on_after_a_failure(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_script([{"attempts": [{"raw": "x"}] * 3}])), encoding="utf-8")
    proc = run_cli(
        "run", "go", "--scenario", str(scenario), "--thread", "f1", "--plan-format", "json",
        "--db", str(tmp_path / "runs.sqlite"), "--workspace", str(tmp_path / "ws"), cwd=tmp_path,
        env={**clean_env(), "COLUMNS": "400"},  # one line, however long the path
    )  # fmt: skip
    assert proc.returncode == 1
    said = " ".join(proc.stdout.split())
    # With the --db it needs: from another folder, `planexec resume f1` would not find it.
    assert f"go on from there with: planexec resume f1 --db {tmp_path / 'runs.sqlite'}" in said


def _write(line: str) -> dict:
    return {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": line}}]}


def _steps_script(steps: list[dict], executor: dict, replanner: list) -> dict:
    return {
        "name": "resume_failed",
        "goal": "Log lines.",
        "tools": ["write_file"],
        "planner": {"steps": steps},
        "executor": executor,
        "replanner": replanner,
    }


def _fail_then_fix(
    tmp_path: Path, steps: list[dict], broken: dict, fixed: dict, replanner: list, *options: str
) -> str:
    """Run `steps` with the `broken` executor turns (the run fails), then write the `fixed`
    ones into the scenario, as a user fixes the cause before resuming. Returns the database."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_steps_script(steps, broken, replanner)), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    code, _ = run_json(
        "run", "go", "--scenario", str(scenario), "--thread", "f1", "--db", db,
        "--workspace", str(tmp_path / "ws"), *options, cwd=tmp_path,
    )  # fmt: skip
    assert code == 1
    scenario.write_text(json.dumps(_steps_script(steps, fixed, replanner)), encoding="utf-8")
    return db


def test_budgets_raised_on_the_resume_of_a_failed_run_apply_and_are_kept(tmp_path: Path) -> None:
    steps = [
        {"id": "s1", "description": "Log s1."},
        {"id": "s2", "description": "Log s2."},
        {"id": "s3", "description": "Log s3.", "depends_on": ["s1", "s2"]},
    ]
    fixed = {
        "s1": [_write("s1\n"), {"content": "ok"}],
        "s2": [_write("s2\n"), {"content": "ok"}],
        "s3": [_write("s3\n"), {"content": "ok"}],
    }
    broken = {**fixed, "s2": [_write("s2\n")]}  # s2 wrote, then its model failed
    db = _fail_then_fix(tmp_path, steps, broken, fixed, [FINISH], "--max-tool-calls", "3")

    code, events = run_json("resume", "f1", "--db", db, "--max-tool-calls", "20", cwd=tmp_path)
    assert code == 0, events[-1]  # s3's call is the third: its next turn is past the old 3
    shown = json.loads(run_cli("show", "f1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert shown["context"]["max_total_tool_calls"] == 20
    assert sorted((tmp_path / "ws" / "log.txt").read_text().splitlines()) == ["s1", "s2", "s3"]


def test_every_step_whose_model_failed_goes_on_and_news_reaches_the_replanner_first(
    tmp_path: Path,
) -> None:
    """s1 and s2 both wrote and then lost their model; s3 failed with a quota error (news)
    beside them; s4 had not started. The resume continues s1 and s2 from their turns only after
    the replanner saw s3's failure (here it stops the run): s4 never starts."""
    steps = [
        {"id": "s1", "description": "Log s1."},
        {"id": "s2", "description": "Log s2."},
        {"id": "s3", "description": "Log s3."},
        {"id": "s4", "description": "Log s4."},
    ]
    quota = [{"error": "quota", "message": "You exceeded your current quota"}]
    fixed = {
        "s1": [_write("s1\n"), {"content": "ok"}],
        "s2": [_write("s2\n"), {"content": "ok"}],
        "s3": quota,
        "s4": [_write("s4\n"), {"content": "ok"}],
    }
    broken = {**fixed, "s1": [_write("s1\n")], "s2": [_write("s2\n")]}
    stop = {"action": "finish", "reason": "s3 failed", "response": "Stopped: s3 failed."}
    db = _fail_then_fix(tmp_path, steps, broken, fixed, [stop], "--max-concurrency", "3")

    code, events, shown = _resume(tmp_path, db)
    assert code == 0, events[-1]
    assert "s4" not in started_ids(events)
    assert shown["response"] == "Stopped: s3 failed."
    assert sorted((tmp_path / "ws" / "log.txt").read_text().splitlines()) == ["s1", "s2"]


def test_two_steps_whose_model_failed_both_go_on_from_their_turns(tmp_path: Path) -> None:
    """s1 and s2 both wrote and then lost their model: the resume continues each from its
    journaled turns (neither write is made again) and the run finishes."""
    steps = [{"id": "s1", "description": "Log s1."}, {"id": "s2", "description": "Log s2."}]
    fixed = {"s1": [_write("s1\n"), {"content": "ok"}], "s2": [_write("s2\n"), {"content": "ok"}]}
    broken = {"s1": [_write("s1\n")], "s2": [_write("s2\n")]}
    db = _fail_then_fix(tmp_path, steps, broken, fixed, [FINISH])

    code, events, shown = _resume(tmp_path, db)
    assert code == 0, events[-1]
    assert sorted((tmp_path / "ws" / "log.txt").read_text().splitlines()) == ["s1", "s2"]
    for step_id in ("s1", "s2"):
        result = shown["results"][step_id]
        assert result["status"] == "done", step_id
        assert result["tool_calls_made"] == 1, step_id


def test_turns_paid_before_a_failure_beside_a_budget_stop_are_counted_once(
    tmp_path: Path,
) -> None:
    """While the plan streams, s1 and s3 make their calls and reach --max-tool-calls 2 (they
    stop mid-way, their first turns paid and counted) and s2's model fails: the run fails. The
    resume with a raised budget replays s1's and s3's first turns: not counted again."""
    steps = [
        {"id": "s1", "description": "Log s1."},
        {"id": "s2", "description": "Log s2."},
        {"id": "s3", "description": "Log s3."},
        {"id": "s4", "description": "Log s4.", "depends_on": ["s1", "s2", "s3"]},
    ]
    fixed = {k: [_write(f"{k}\n"), {"content": "ok"}] for k in ("s1", "s2", "s3", "s4")}
    broken = {**fixed, "s2": []}
    db = _fail_then_fix(tmp_path, steps, broken, fixed, [FINISH], "--max-tool-calls", "2")

    code, events = run_json("resume", "f1", "--db", db, "--max-tool-calls", "20", cwd=tmp_path)
    assert code == 0, events[-1]
    shown = json.loads(run_cli("show", "f1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert shown["usage"]["executor"]["calls"] == 8, "two paid turns per step, each once"
    assert sorted((tmp_path / "ws" / "log.txt").read_text().splitlines()) == [
        "s1", "s2", "s3", "s4"
    ]  # fmt: skip


def test_a_recorded_run_that_never_started_is_resumed_from_its_goal(tmp_path: Path) -> None:
    """`run --queue` records a run and starts nothing (so does a Ctrl-C while a run is being
    recorded); `resume` starts it. The failed-run check read a checkpoint that was not there."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(_script([FINISH])), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    queued = run_cli(
        "run", "go", "--scenario", str(scenario), "--thread", "q1", "--db", db, "--queue",
        "--workspace", str(tmp_path / "ws"), cwd=tmp_path,
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    code, events = run_json("resume", "q1", "--db", db, cwd=tmp_path)
    assert code == 0, events[-1:]
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"


def test_a_planner_whose_stream_dropped_after_a_tool_step_ran_is_not_planned_afresh(
    tmp_path: Path,
) -> None:
    """The plan's stream is cut on every node attempt after s1, a tool step, started: no model
    reply was whole, so no usage is recorded, but s1 wrote its line. A fresh plan would write
    it again: refused, as for a paid planner."""
    s1 = {
        "id": "s1",
        "description": "Log s1.",
        "tool": "write_file",
        "args": {**LOG, "content": "s1\n"},
    }
    s2 = {
        "id": "s2",
        "description": "Log s2, a description long enough to arrive late.",
        "depends_on": ["s1"],
    }
    planner = {"steps": [s1, s2], "drop_at": 0.8}
    script = {**_script([FINISH], planner=planner), "token_latency": {"planner": 0.02}}
    _, db, code, events = _run(tmp_path, script)
    assert code == 1 and "the stream dropped" in events[-1]["reason"]
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\n"
    shown = json.loads(run_cli("show", "f1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert not shown["usage"], "no reply was whole: nothing recorded as paid"

    proc = run_cli("resume", "f1", "--db", db, cwd=tmp_path)
    assert proc.returncode == 4
    assert "failed in its planner after paying for it" in " ".join(proc.stderr.split())
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\n", "s1 not written again"
