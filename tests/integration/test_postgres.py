"""The real `planexec` CLI on PostgreSQL: SIGKILL mid-run, resume, then `runs` and `show`.

Everything lives in a throwaway schema (tests/integration/pg.py) that is dropped afterwards; the
`--db` URL sets search_path to it, so LangGraph's tables must appear there and nowhere else.
Postgres being down is a failure, not a skip.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    clean_env,
    cli,
    fanout_args,
    finished_ids,
    of_kind,
    run_json,
    run_until_then_kill,
    slow_alone_in_flight,
)
from tests.helpers import started_ids as started
from tests.integration.pg import LANGGRAPH_TABLES, PgSchema, temporary_schema

pytestmark = pytest.mark.integration

ROLES = {"planner", "executor", "replanner"}
FANOUT_STEPS = {"fast", "medium", "slow", "after_fast", "join"}


@pytest.fixture(scope="module")
def pg() -> Iterator[PgSchema]:
    with temporary_schema() as schema:
        yield schema


def cli_json(*args: str, cwd: Path, timeout: float = 60) -> Any:
    """Run a CLI command that prints one JSON document (`runs --json`, `show --json`)."""
    proc = subprocess.run(
        cli(*args, "--json"), cwd=cwd, env=clean_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


# The two kill-and-resume flows run once per module: their own tests check the events, and
# test_runs_and_show_on_postgres reads both runs back. Requesting either fixture runs it.


@pytest.fixture(scope="module")
def demo_run(pg: PgSchema, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("pg_demo")
    first = run_until_then_kill(
        "demo",
        "--thread",
        "k1",
        "--workspace",
        str(tmp / "ws"),
        "--db",
        pg.url,
        cwd=tmp,
        # s2 takes three executor turns; kill while it is in the middle of them.
        until=lambda ev: "s2" in started(ev),
    )
    code, second = run_json("resume", "k1", "--db", pg.url, cwd=tmp)
    again_code, again = run_json("resume", "k1", "--db", pg.url, cwd=tmp)
    return {
        "tmp": tmp,
        "first": first,
        "code": code,
        "second": second,
        "again_code": again_code,
        "again": again,
    }


@pytest.fixture(scope="module")
def fanout_run(pg: PgSchema, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("pg_fanout")
    ws = tmp / "ws"
    first = run_until_then_kill(*fanout_args(ws, pg.url, "k2"), cwd=tmp, until=slow_alone_in_flight)
    code, second = run_json("resume", "k2", "--db", pg.url, cwd=tmp)
    return {"tmp": tmp, "ws": ws, "first": first, "code": code, "second": second}


def test_setup_creates_langgraph_tables_in_the_url_schema_only() -> None:
    # A schema of its own, so this sees setup() alone, before any run.
    with temporary_schema() as schema:
        assert schema.tables(schema.name) == set()

        assert cli_json("runs", "--db", schema.url, cwd=Path.cwd())["runs"] == []

        assert schema.tables(schema.name) == LANGGRAPH_TABLES
        assert schema.tables("public") - schema.public_before == set()


def test_demo_killed_mid_step_resumes_without_rerunning_finished_steps_on_postgres(
    demo_run: dict[str, Any],
) -> None:
    assert finished_ids(demo_run["first"]) == ["s1"]

    second = demo_run["second"]
    assert demo_run["code"] == 0, second[-1:]
    assert "s1" not in started(second), "a completed step ran again after resume"
    assert started(second)[0] == "s2"
    assert len(started(second)) == len(set(started(second))), started(second)
    assert of_kind(second, "result")[0]["status"] == "done"
    assert (demo_run["tmp"] / "ws" / "report.md").read_text().startswith("# Q3 2026 revenue")

    assert demo_run["again_code"] == 0
    assert started(demo_run["again"]) == [], "resuming a finished run must run nothing"


def test_kill_with_parallel_steps_in_flight_reruns_only_unfinished_on_postgres(
    fanout_run: dict[str, Any],
) -> None:
    first = fanout_run["first"]
    assert "slow" in started(first) and "slow" not in finished_ids(first)

    second = fanout_run["second"]
    assert fanout_run["code"] == 0, second[-1:]
    assert sorted(started(second)) == ["join", "slow"]
    assert sorted(finished_ids(second, recovered=True)) == ["after_fast", "fast", "medium"]
    assert of_kind(second, "result")[0]["status"] == "done"
    log = (fanout_run["ws"] / "log.txt").read_text().split()
    # Every finished step's side effect happened once; only `slow` may have run twice.
    assert sorted(x for x in log if x != "slow") == ["after_fast", "fast", "join", "medium"]
    assert 1 <= log.count("slow") <= 2


def test_runs_and_show_on_postgres(
    pg: PgSchema, demo_run: dict[str, Any], fanout_run: dict[str, Any], tmp_path: Path
) -> None:
    runs = cli_json("runs", "--db", pg.url, cwd=tmp_path)["runs"]

    by_id = {r["thread_id"]: r for r in runs}
    assert set(by_id) == {"k1", "k2"}, runs
    assert [r["thread_id"] for r in runs] == ["k2", "k1"], "runs must be newest first"
    for r in runs:
        assert r["status"] == "done", r
        done, total = r["steps"].split("/")
        assert done == total and int(total) > 0, r
    assert by_id["k2"]["steps"] == "5/5"
    assert by_id["k2"]["goal"] == "go"  # the GOAL argument, not the scenario's
    assert by_id["k1"]["replans"] >= 1  # the demo revises its plan once

    for thread_id in ("k1", "k2"):
        shown = cli_json("show", thread_id, "--db", pg.url, cwd=tmp_path)
        assert shown["thread_id"] == thread_id
        assert shown["status"] == "done"
        plan_ids = [s["id"] for s in shown["plan"]]
        assert plan_ids and len(plan_ids) == len(set(plan_ids))
        assert set(shown["results"]) >= set(plan_ids)
        for step_id in plan_ids:
            result = shown["results"][step_id]
            assert result["status"] == "done", (thread_id, step_id, result)
            assert isinstance(result["attempts"], int) and result["attempts"] >= 1, result
        assert set(shown["usage"]) == ROLES, shown["usage"]
        for role, usage in shown["usage"].items():
            assert usage["calls"] >= 1 and usage["input_tokens"] > 0, (role, usage)

    fanout = cli_json("show", "k2", "--db", pg.url, cwd=tmp_path)
    assert {s["id"] for s in fanout["plan"]} == FANOUT_STEPS
    # A step recovered from the journal after the kill is the same attempt, not a new one.
    for step_id in ("fast", "medium", "after_fast"):
        assert fanout["results"][step_id]["attempts"] == 1, fanout["results"][step_id]


def test_tables_live_in_the_test_schema_and_nothing_in_public(
    pg: PgSchema, demo_run: dict[str, Any], fanout_run: dict[str, Any]
) -> None:
    assert pg.tables(pg.name) == LANGGRAPH_TABLES
    assert pg.tables("public") - pg.public_before == set(), "the test created tables in public"

    with pg.connect() as conn:
        checkpoints = dict(
            conn.execute(
                f'SELECT thread_id, count(*) FROM "{pg.name}".checkpoints GROUP BY thread_id'
            ).fetchall()
        )
        runs = {
            r[0]
            for r in conn.execute(
                f"SELECT key FROM \"{pg.name}\".store WHERE prefix = 'planexec.runs'"
            ).fetchall()
        }
    assert set(checkpoints) == {"k1", "k2"} and min(checkpoints.values()) > 0, checkpoints
    assert runs == {"k1", "k2"}


def test_a_run_recorded_with_no_job_reads_interrupted_and_queued_once_queued(
    tmp_path: Path,
) -> None:
    """`run --queue` killed between its record and its job left a run shown as queued that no
    worker would take; the status now comes from procrastinate's jobs table."""
    from app.context import Context
    from app.runs import runner
    from app.runs.persistence import open_persistence
    from app.runs.worker import enqueue

    with temporary_schema() as schema:
        with open_persistence(schema.url) as persistence:
            ctx = Context.every_role("scripted:demo", workspace=str(tmp_path / "ws"))
            runner.submit_run(persistence, "go", ctx, "cut")
            assert runner.run_state(persistence, "cut")["status"] == "interrupted"
            assert enqueue(persistence, "cut")
            assert runner.run_state(persistence, "cut")["status"] == "queued"
