"""`planexec bench --plan-cache`: a templated task's second run against its first."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli.commands import app


def test_second_templated_run_makes_no_planner_call_and_costs_less(tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.json"
    args = ["bench", "--plan-cache", "--quick", "--task", "diamond-short", "--json", str(rows_file)]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "plan cache: second run of a templated task" in result.output
    [row] = json.loads(rows_file.read_text())
    assert row["task"] == "diamond-short"
    assert (row["first_planner_calls"], row["second_planner_calls"]) == (1, 0)
    assert row["first_plan_cache"] == ["miss", "stored"]
    assert row["second_plan_cache"] == ["hit"]
    assert row["second_cost_usd"] < row["first_cost_usd"]
