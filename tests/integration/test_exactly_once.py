"""Exactly-once side effects across real kills, SIGTERM, honest traces and budgets, on real
`planexec` processes and real databases.

The kill loop is benchmarks/kill_loop.py's, cut to a handful of kills: a counting HTTP server on
127.0.0.1, an 8-step plan whose every step POSTs once with its idempotency key, children killed at
random and resumed until done.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.runs.demo import prepare_workspace
from tests.helpers import (
    REPO,
    finished_ids,
    of_kind,
    run_cli,
    run_json,
    run_until_then_kill,
    signal_fanout_run,
    started_ids,
)

pytestmark = pytest.mark.integration

LOG = {"path": "log.txt", "append": True}


def _kill_loop_module():
    spec = importlib.util.spec_from_file_location("kill_loop", REPO / "benchmarks" / "kill_loop.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_loop"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_random_sigkills_give_every_step_its_effect_exactly_once(tmp_path: Path) -> None:
    kill_loop = _kill_loop_module()
    summary = kill_loop.kill_loop(
        sqlite_runs=1, postgres_runs=1, kills_per_run=3, max_delay=1.5, seed=11, workdir=tmp_path
    )
    for backend, row in summary.items():
        assert row["kills"] >= 2, (backend, row)
        assert row["finished"] == row["runs"], (backend, row)
        assert row["duplicates"] == 0, (backend, row)
        assert row["lost"] == 0, (backend, row)
        assert row["effects_per_step"] == {1: 8 * row["runs"]}, (backend, row)


def test_sigterm_loses_nothing_and_repeats_nothing_even_at_a_callee_that_ignores_keys(
    tmp_path: Path,
) -> None:
    kill_loop = _kill_loop_module()
    summary = kill_loop.kill_loop(
        sqlite_runs=1,
        postgres_runs=0,
        kills_per_run=2,
        max_delay=1.5,
        sig=signal.SIGTERM,
        honour_keys=False,
        seed=5,
        workdir=tmp_path,
    )
    row = summary["sqlite"]
    assert row["kills"] >= 1 and row["finished"] == row["runs"], row
    assert row["duplicates"] == 0 and row["lost"] == 0, row
    assert row["repeated_model_calls"] == 0, row


def test_sigterm_lets_steps_in_flight_finish_and_exits_143(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    returncode, stderr = signal_fanout_run(tmp_path, db, "term", signal.SIGTERM)

    assert returncode == 143, stderr
    assert "Traceback" not in stderr
    state = json.loads(run_cli("show", "term", "--db", db, "--json", cwd=tmp_path).stdout)
    assert state["results"]["slow"]["status"] == "done", "the step in flight was let finish"
    assert "join" not in state["results"], "no new step starts after SIGTERM"
    code, resumed = run_json("resume", "term", "--db", db, cwd=tmp_path)
    assert code == 0 and started_ids(resumed) == ["join"]


def test_a_step_killed_mid_way_is_shown_restarted_and_replays_its_turns(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    run_until_then_kill(
        "demo",
        "--thread",
        "r1",
        "--workspace",
        str(tmp_path / "ws"),
        "--db",
        db,
        cwd=tmp_path,
        until=lambda ev: "s2" in started_ids(ev),
    )
    code, resumed = run_json("resume", "r1", "--db", db, cwd=tmp_path)
    assert code == 0

    restarted = of_kind(resumed, "step_restarted")
    assert [e["step_id"] for e in restarted] == ["s2"]
    assert restarted[0]["execution"] == 2
    state = json.loads(run_cli("show", "r1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert state["results"]["s2"]["executions"] == 2
    # s1 is a tool step (graphs/tool_step.py): one call, not journaled turn by turn.
    assert state["results"]["s1"].get("executions", 1) == 1
    # Every tool call made is counted, including any made by the killed execution.
    assert state["results"]["s2"]["tool_calls_made"] >= len(state["results"]["s2"]["tool_calls"])


def _run_then_kill(
    tmp_path: Path,
    script: dict,
    goal: tuple[str, ...],
    options: tuple[str, ...],
    until: Callable[[list[dict]], bool],
) -> tuple[Path, str, list[dict]]:
    """Run `script` (thread k1, workspace ws), SIGKILL it once `until(events)` holds. Returns
    the scenario file, the database and the events seen."""
    scenario = tmp_path / f"{script['name']}.json"
    scenario.write_text(json.dumps(script), encoding="utf-8")
    db = str(tmp_path / "runs.sqlite")
    events = run_until_then_kill(
        "run", *goal, "--scenario", str(scenario), "--thread", "k1",
        "--workspace", str(tmp_path / "ws"), "--db", db, *options,
        cwd=tmp_path,
        until=until,
    )  # fmt: skip
    return scenario, db, events


def _killed_while_its_plan_streams(
    tmp_path: Path, *options: str, goal: tuple[str, ...] = ("go",)
) -> tuple[Path, str]:
    """A run (thread k1, workspace ws) whose s1, a tool step, starts and finishes while the
    planner still streams s2, killed before the plan is whole. Returns the scenario file and
    the database."""
    step = {"path": "log.txt", "content": "s1\n", "append": True}
    s2 = {**step, "content": "s2\n"}
    script = {
        "name": "stream_kill",
        "goal": "Log two lines.",
        "tools": ["write_file"],
        "latency": {"planner": 0.05, "replanner": 0.05},
        "token_latency": {"planner": 0.08},
        "planner": {
            "steps": [
                {"id": "s1", "tool": "write_file", "args": step},
                {"id": "s2", "depends_on": ["s1"], "description": "Log s2. " + "Carefully. " * 12},
            ]
        },
        "executor": {
            "s2": [{"tool_calls": [{"name": "write_file", "args": s2}]}, {"content": "."}]
        },
        "replanner": [{"action": "finish", "response": "done"}],
    }
    until = lambda ev: "s1" in finished_ids(ev)  # noqa: E731
    scenario, db, events = _run_then_kill(tmp_path, script, goal, options, until)
    assert not of_kind(events, "plan"), "the plan was whole before the kill: nothing tested"
    return scenario, db


def test_a_run_killed_while_its_plan_streams_shows_and_keeps_the_steps_that_finished(
    tmp_path: Path,
) -> None:
    """No checkpoint holds s1, or even a run id, after the kill. `show` must list s1 from the
    planner's journal, and the resume must take it, not write again."""
    _, db = _killed_while_its_plan_streams(tmp_path)

    shown = json.loads(run_cli("show", "k1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert shown["status"] == "interrupted"
    assert shown["results"]["s1"]["status"] == "done"
    assert shown["results"]["s1"]["journaled"] is True
    table = run_cli("show", "k1", "--db", db, cwd=tmp_path).stdout
    assert "unfinished" in table and "replaced" not in table  # (the column wraps)

    code, resumed = run_json("resume", "k1", "--db", db, cwd=tmp_path)
    assert code == 0
    assert "s1" not in started_ids(resumed)
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"


def _planner_killed_after_its_plan(
    tmp_path: Path, *options: str, goal: tuple[str, ...] = ("go",)
) -> tuple[dict, Path, str]:
    """A run (thread k1, workspace ws) of s1 then s2, killed while s2 (30 s) runs inside the
    planner node, after the plan was whole. `goal`: the goal argument, or --template options.
    Returns the scenario (to reword before a resume), its file and the database."""
    log_s1 = {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": "s1\n"}}]}
    log_s2 = {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": "s2\n"}}]}
    script = {
        "name": "plan_kill",
        "goal": "Log two lines.",
        "tools": ["write_file"],
        "latency": {"planner": 0.05, "replanner": 0.05},
        "planner": {
            "steps": [
                {"id": "s1", "description": "Log s1."},
                {"id": "s2", "depends_on": ["s1"], "description": "Log s2."},
            ]
        },
        "executor": {
            "s1": [log_s1, {"content": "logged s1"}],
            "s2": [{**log_s2, "latency": 30}, {"content": "logged s2"}],
        },
        "replanner": [{"action": "finish", "response": "done"}],
    }
    until = lambda ev: "s2" in started_ids(ev)  # noqa: E731
    scenario, db, events = _run_then_kill(tmp_path, script, goal, options, until)
    assert of_kind(events, "plan"), "killed before the plan was whole: nothing tested"
    script["executor"]["s2"][0] = log_s2  # no 30 s wait after the resume
    scenario.write_text(json.dumps(script), encoding="utf-8")
    return script, scenario, db


def test_a_planner_killed_after_its_plan_resumes_with_that_plan_not_a_new_answer(
    tmp_path: Path,
) -> None:
    """The first steps run inside the planner node while the plan streams, and on until the
    plan stops for the replanner, so the node can be killed long after its model call. A model
    asked again may word a step differently, and a step worded differently is a new step. Here
    the scenario is reworded between the kill and the resume (a model that answers differently
    the second time): the resume must go on with the plan it had. Before, the planner was paid
    again and s1 ran again under its new wording (two more model calls; only its write's
    idempotency key kept the log line from repeating, a callee that ignores keys would not)."""
    script, scenario, db = _planner_killed_after_its_plan(tmp_path)

    shown = json.loads(run_cli("show", "k1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert [s["id"] for s in shown["plan"]] == ["s1", "s2"], "the journaled plan is shown"
    assert shown["results"]["s1"]["journaled"] is True

    script["planner"]["steps"][0]["description"] = "Write s1 to the log."  # asked again: reworded
    scenario.write_text(json.dumps(script), encoding="utf-8")
    code, resumed = run_json("resume", "k1", "--db", db, cwd=tmp_path)
    assert code == 0
    [plan] = of_kind(resumed, "plan")
    assert plan.get("recovered") is True
    assert plan["steps"][0]["description"] == "Log s1."
    assert "s1" not in started_ids(resumed)
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"
    usage = of_kind(resumed, "result")[0]["usage"]
    assert usage["planner"]["calls"] == 1, "the plan is paid for once, and counted once"


def test_a_step_the_killed_planners_final_plan_dropped_is_reported_and_paid_once(
    tmp_path: Path,
) -> None:
    """The planner's first reply is invalid, but its s1 started while it streamed and finished;
    the retry words s1 differently, so the old s1 is discarded. Killed while the retry's s2 runs
    (after the plan was journaled), the resume replays the plan, not the model: the old s1 must
    still be reported as discarded and its model call counted (no checkpoint holds it). Before,
    both were lost, and a budget counted a run cheaper than it was."""
    bad = {
        "steps": [
            {"id": "s1", "description": "Look up s1."},
            {"id": "s2", "depends_on": ["nope"], "description": "Log s2."},
        ]
    }
    good = {
        "steps": [
            {"id": "s1", "description": "Look up s1 again."},
            {"id": "s2", "depends_on": ["s1"], "description": "Log s2."},
        ]
    }
    log_s2 = {"tool_calls": [{"name": "write_file", "args": {**LOG, "content": "s2\n"}}]}
    script = {
        "name": "retry_kill",
        "goal": "Look up, then log.",
        "tools": ["write_file"],
        "latency": {"planner": 0.05, "replanner": 0.05, "executor": 0.01},
        # Slow enough that the first reply's s1 starts and finishes before that reply is
        # found invalid, on a loaded machine too.
        "token_latency": {"planner": 0.05},
        "planner": {"attempts": [bad, good]},
        "executor": {
            "s1": [{"content": "one"}],
            "s2": [{**log_s2, "latency": 30}, {"content": "logged s2"}],
        },
        "replanner": [{"action": "finish", "response": "done"}],
    }  # fmt: skip
    until = lambda ev: finished_ids(ev).count("s1") == 2 and "s2" in started_ids(ev)  # noqa: E731
    scenario, db, events = _run_then_kill(tmp_path, script, ("go",), (), until)
    assert of_kind(events, "plan") and not of_kind(events, "step_discarded")
    script["executor"]["s2"][0] = log_s2  # no 30 s wait after the resume
    scenario.write_text(json.dumps(script), encoding="utf-8")

    code, resumed = run_json("resume", "k1", "--db", db, cwd=tmp_path)
    assert code == 0
    assert of_kind(resumed, "plan")[0].get("recovered") is True
    assert [e["description"] for e in of_kind(resumed, "step_discarded")] == ["Look up s1."]
    shown = json.loads(run_cli("show", "k1", "--db", db, "--json", cwd=tmp_path).stdout)
    (entry,) = [h for h in shown["history"] if h["action"] == "discarded"]
    assert [r["description"] for r in entry["results"]] == ["Look up s1."]
    usage = of_kind(resumed, "result")[0]["usage"]
    # old s1, new s1, and s2's two turns (its first, killed mid-call, was never answered)
    assert usage["executor"]["calls"] == 4, usage["executor"]
    assert (tmp_path / "ws" / "log.txt").read_text() == "s2\n"


def _kill_after_the_plan(tmp_path: Path, *options: str, goal: tuple[str, ...]) -> Path:
    return _planner_killed_after_its_plan(tmp_path, *options, goal=goal)[1]


def _kill_while_it_streams(tmp_path: Path, *options: str, goal: tuple[str, ...]) -> Path:
    return _killed_while_its_plan_streams(tmp_path, *options, goal=goal)[0]


@pytest.mark.parametrize("kill", [_kill_after_the_plan, _kill_while_it_streams])
def test_a_killed_planner_node_goes_on_without_a_cached_plan_stored_since(
    tmp_path: Path, kill: Callable[..., Path]
) -> None:
    """A templated run killed in its planner node (after its plan, or while it streamed), then
    another run of the template that finishes and caches its plan: the resume must not take
    the cached plan. A cache hit there started every step afresh in the executor, under new
    keys: s1 wrote twice (both kill points; found by reviews)."""
    (tmp_path / "templates.yaml").write_text(
        'templates:\n  - name: logit\n    goal: "Log two lines for {region}."\n'
        "    params: [region]\n",
        encoding="utf-8",
    )
    template = ("--templates", "templates.yaml", "--template", "logit", "--param", "region=Oslo")
    scenario = kill(tmp_path, goal=template)
    db = str(tmp_path / "runs.sqlite")
    other = ("run", *template, "--scenario", str(scenario), "--db", db, "--thread", "k2")
    code, events = run_json(*other, "--workspace", str(tmp_path / "ws2"), cwd=tmp_path)
    cached = of_kind(events, "plan_cache")
    assert code == 0 and "stored" in [e["action"] for e in cached], cached

    code, resumed = run_json("resume", "k1", "--db", db, cwd=tmp_path)
    assert code == 0
    assert "hit" not in [e.get("action") for e in of_kind(resumed, "plan_cache")]
    assert "s1" not in started_ids(resumed)
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\ns2\n"


def test_a_replayed_plan_keeps_the_wall_clock_budget_of_the_run_it_started(
    tmp_path: Path,
) -> None:
    """The wall-clock budget counts from when the planner started the run, not from a resume
    of its node: 9 s after a run with --max-seconds 8 started, s2 must not start. (8 s: the
    run must reach its kill point inside the budget on a loaded machine too.)"""
    started = time.time()
    _, _, db = _planner_killed_after_its_plan(tmp_path, "--max-seconds", "8")
    time.sleep(max(0.0, started + 9 - time.time()))
    code, resumed = run_json("resume", "k1", "--db", db, cwd=tmp_path)
    [result] = of_kind(resumed, "result")
    assert result["status"] == "budget_exceeded", result
    assert "s2" not in started_ids(resumed)
    assert (tmp_path / "ws" / "log.txt").read_text() == "s1\n"


def test_a_budget_ends_the_run_resumably_and_a_raised_one_finishes_it(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    base = ("demo", "--thread", "b1", "--workspace", str(tmp_path / "ws"), "--db", db)
    code, events = run_json(*base, cwd=tmp_path)  # the reference: the demo, unbounded
    assert code == 0
    tool_calls = sum(len(r["tool_calls"]) for r in _results(tmp_path, db, "b1").values())

    code, events = run_json(
        "run", "Q3 revenue", "--scenario", "demo", "--thread", "b2", "--db", db,
        "--workspace", str(tmp_path / "ws2"), "--max-tool-calls", "2", cwd=tmp_path,
    )  # fmt: skip
    assert code == 6
    [hit] = of_kind(events, "budget_exceeded")
    assert hit["budget"] == "max_total_tool_calls" and hit["spent"]["tool_calls"] == 2
    state = json.loads(run_cli("show", "b2", "--db", db, "--json", cwd=tmp_path).stdout)
    assert state["status"] == "budget_exceeded"
    assert sum(len(r["tool_calls"]) for r in state["results"].values()) <= 2

    code, _ = run_json("resume", "b2", "--db", db, cwd=tmp_path)
    assert code == 6, "resuming without a raised budget must not spend more"

    code, events = run_json("resume", "b2", "--db", db, "--max-tool-calls", "100", cwd=tmp_path)
    assert code == 0, events[-1]
    made = sum(
        r.get("tool_calls_made", len(r.get("tool_calls", [])))  # tool steps: their one call
        for r in _results(tmp_path, db, "b2").values()
    )
    assert made == tool_calls, "the budget stop and resume repeated or lost a tool call"


def test_a_step_stopped_mid_way_by_a_budget_makes_its_call_once_across_resume(
    tmp_path: Path,
) -> None:
    """A model step appends (its one allowed call) and is stopped before its final turn; a
    new `planexec resume --max-tool-calls` process continues it from its journaled turns. The
    append is a real file written through the idempotency ledger: a call made again after the
    resume (a new node execution, so a new key) would append a second line."""
    write = {"path": "log.txt", "content": "paid\n", "append": True}
    scenario = {
        "name": "log_once",
        "goal": "Log the payment.",
        "tools": ["write_file"],
        "planner": {"steps": [{"id": "s1", "description": "Log it."}]},
        "executor": {
            "s1": [
                {"tool_calls": [{"name": "write_file", "args": write}]},
                {"content": "logged: {last_tool_result}"},
            ]
        },
        "replanner": [{"action": "finish", "reason": "done", "response": "Logged."}],
    }
    path = tmp_path / "log_once.json"
    path.write_text(json.dumps(scenario))
    db, ws = str(tmp_path / "runs.sqlite"), tmp_path / "ws"
    code, events = run_json(
        "run", "g", "--scenario", str(path), "--thread", "m1", "--db", db,
        "--workspace", str(ws), "--max-tool-calls", "1", cwd=tmp_path,
    )  # fmt: skip
    assert code == 6, events[-1]
    assert started_ids(events) == ["s1"]
    assert (ws / "log.txt").read_text() == "paid\n"

    code, events = run_json("resume", "m1", "--db", db, "--max-tool-calls", "10", cwd=tmp_path)
    assert code == 0, events[-1]
    assert (ws / "log.txt").read_text() == "paid\n", "the resumed step appended again"
    s1 = _results(tmp_path, db, "m1")["s1"]
    assert (s1["status"], s1["tool_calls_made"]) == ("done", 1)


def test_a_cost_budget_refuses_a_model_with_no_known_price(tmp_path: Path) -> None:
    scenario = json.loads((REPO / "app" / "scripted" / "bundled" / "demo.json").read_text())
    scenario["stands_for"] = {"planner": "acme:mystery-1", "executor": "acme:mystery-1",
                              "replanner": "acme:mystery-1"}  # fmt: skip
    path = tmp_path / "unpriced.json"
    path.write_text(json.dumps(scenario))
    proc = run_cli(
        "run", "x", "--scenario", str(path), "--db", str(tmp_path / "r.sqlite"),
        "--max-cost", "0.5", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 4
    message = " ".join(proc.stderr.split())  # the console wraps long lines
    assert "no known price" in message and "acme:mystery-1" in message


def test_resume_refuses_a_cost_budget_for_a_model_with_no_known_price(tmp_path: Path) -> None:
    """`resume --max-cost` adds a cost budget to a run whose models have no price: it is
    refused before anything runs (exit 4), as `run --max-cost` is, and the run is left as it
    was, still resumable without one."""
    scenario = json.loads((REPO / "app" / "scripted" / "bundled" / "demo.json").read_text())
    scenario["stands_for"] = {"planner": "acme:mystery-1", "executor": "acme:mystery-1",
                              "replanner": "acme:mystery-1"}  # fmt: skip
    path = tmp_path / "unpriced.json"
    path.write_text(json.dumps(scenario))
    db, ws = str(tmp_path / "r.sqlite"), tmp_path / "ws"
    code, _ = run_json(
        "run", "x", "--scenario", str(path), "--thread", "u1", "--db", db, "--workspace",
        str(ws), "--sql-database", str(prepare_workspace(ws)), "--max-tool-calls", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 6

    proc = run_cli(
        "resume", "u1", "--db", db, "--max-tool-calls", "100", "--max-cost", "0.5", cwd=tmp_path
    )
    assert proc.returncode == 4, proc.stdout
    message = " ".join(proc.stderr.split())
    assert "no known price" in message and "acme:mystery-1" in message
    state = json.loads(run_cli("show", "u1", "--db", db, "--json", cwd=tmp_path).stdout)
    assert state["status"] == "budget_exceeded"
    code, _ = run_json("resume", "u1", "--db", db, "--max-tool-calls", "100", cwd=tmp_path)
    assert code == 0


def _results(tmp_path: Path, db: str, thread: str) -> dict:
    return json.loads(run_cli("show", thread, "--db", db, "--json", cwd=tmp_path).stdout)["results"]
