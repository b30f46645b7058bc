"""Text no checkpoint can hold: a NUL or a lone surrogate from a model, a tool or a file name.

msgpack checkpoints refuse lone surrogates ("str is not valid UTF-8") and PostgreSQL's JSON
refuses NUL, so one such character from outside failed every write of the run, and every
resume: the run was lost. Each now arrives as U+FFFD (prompts/untrusted.py `storable`), at the
model reply or tool answer, so a step keyed by it is the same before and after a resume.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.integration.pg import temporary_schema

pytestmark = pytest.mark.integration

BAD = "\x00 \ud800"  # a NUL and a lone surrogate, as JSON's "\u0000 \ud800" gives them
SHOWN = "\ufffd \ufffd"
NUL_QUERY = "SELECT 'a' || char(0) || 'b' AS v"

SCENARIO = {
    "name": "unstorable",
    "goal": "g",
    "tools": ["list_files", "sql_query"],
    "planner": {
        "attempts": [
            {"tool_calls": [{"name": "list_files", "args": {"path": "."}}]},  # a look-up
            {
                "steps": [
                    {"id": "1", "description": f"list the files {BAD}"},
                    {"id": "2", "description": "query"},
                    {"id": "3", "description": "sum up", "depends_on": ["1", "2"]},
                ]
            },
        ]
    },
    "executor": {
        "1": [
            {"tool_calls": [{"name": "list_files", "args": {"path": "."}}]},
            {"content": "files: {last_tool_result}"},
        ],
        "2": [
            {"tool_calls": [{"name": "sql_query", "args": {"query": NUL_QUERY}}]},
            {"content": f"{{last_tool_result}} {BAD}"},
        ],
        "3": [{"content": "ok"}],
    },
    "replanner": [{"action": "finish", "reason": "done", "response": f"done {BAD}"}],
}


def run_with_bad_text(tmp_path: Path, db: str) -> dict:
    ws = tmp_path / "ws"
    ws.mkdir()
    # A file name that is not UTF-8: Python reads it with a lone surrogate (b"\xe9" -> "\udce9").
    with open(os.path.join(os.fsencode(ws), b"caf\xe9.txt"), "wb") as f:
        f.write(b"x")
    sqlite3.connect(tmp_path / "data.sqlite").close()
    scenario = tmp_path / "unstorable.json"
    scenario.write_text(json.dumps(SCENARIO), encoding="utf-8")  # "\u0000", "\ud800" escapes
    proc = run_cli("run", "g", "--scenario", str(scenario), "--db", db, "--thread", "bad",
                   "--workspace", str(ws), "--sql-database", str(tmp_path / "data.sqlite"),
                   "--tools", "list_files,sql_query", "--planner-tools", "list_files",
                   "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    shown = run_cli("show", "bad", "--db", db, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def check(state: dict) -> None:
    assert state["status"] == "done", state.get("reason")
    assert state["response"] == f"done {SHOWN}"
    assert state["plan"][0]["description"] == f"list the files {SHOWN}"
    results = state["results"]
    assert "caf\ufffd.txt" in results["1"]["result"], results["1"]
    assert "a\ufffdb" in results["2"]["result"] and results["2"]["result"].endswith(SHOWN)
    looked = next(h for h in state["history"] if h.get("action") == "looked_up")
    assert "caf\ufffd.txt" in json.dumps(looked, ensure_ascii=False)


def test_bad_text_from_models_tools_and_file_names_is_kept_as_u_fffd_sqlite(
    tmp_path: Path,
) -> None:
    check(run_with_bad_text(tmp_path, str(tmp_path / "runs.sqlite")))


def test_bad_text_from_models_tools_and_file_names_is_kept_as_u_fffd_postgres(
    tmp_path: Path,
) -> None:
    with temporary_schema() as schema:
        check(run_with_bad_text(tmp_path, schema.url))


def test_a_reason_holding_a_nul_ends_the_run_on_postgres(tmp_path: Path) -> None:
    """A run's reason is kept inline in PostgreSQL's JSON checkpoint: a rejection whose reason
    holds a NUL (a server caller's "\\u0000") failed the write, and the run stayed paused."""
    from app.context import Context
    from app.runs import runner
    from app.runs.persistence import open_persistence
    from tests.helpers import instant_demo

    ctx = Context.every_role(f"scripted:{instant_demo(tmp_path)}", approve_plan=True)
    with temporary_schema() as schema, open_persistence(schema.url) as persistence:
        assert runner.start_run(persistence, "g", ctx, "rj")["status"] == "paused"
        answer = {"action": "reject", "reason": f"no {BAD}"}
        state = runner.answer_approval(persistence, "rj", answer)
        assert state["status"] == "rejected"
        assert runner.run_state(persistence, "rj")["reason"] == f"plan rejected: no {SHOWN}"
