"""`planexec bench`: one quick task through the CLI, and the CI gate's comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from app.bench.report import baseline_document, gate_failures, ratios
from app.bench.run import Cell
from app.bench.tasks import all_tasks
from app.cli.commands import app

ROW_KEYS = {"task", "arch", "wall_s", "cost_usd", "calls", "input_tokens", "output_tokens"}


def test_bench_quick_on_one_task_writes_rows_and_fails_a_doctored_baseline(
    tmp_path: Path,
) -> None:
    rows_file = tmp_path / "rows.json"
    strict = tmp_path / "baseline.json"
    # A baseline no real run can meet: planexec at a tenth of react-parallel's cost and wall.
    strict.write_text(json.dumps({"ratios": {"diamond-long": {"cost": 0.1, "wall": 0.1}}}))

    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--quick",
            "--task",
            "diamond-long",
            "--json",
            str(rows_file),
            "--check",
            str(strict),
        ],
    )

    assert result.exit_code == 1, result.output
    assert "diamond-long: planexec/react-parallel cost ratio" in result.output
    rows = json.loads(rows_file.read_text())
    assert {r["arch"] for r in rows} == {"planexec", "react", "react-parallel"}
    for row in rows:
        assert ROW_KEYS <= set(row) and row["task"] == "diamond-long"
        assert row["cost_usd"] > 0 and row["input_tokens"] > 0 and row["wall_s"] > 0
        roles = row["roles"].values()
        assert row["input_tokens"] == sum(r["input_tokens"] for r in roles)
        assert row["cached_input_tokens"] == sum(r["cached_input_tokens"] for r in roles)
    by_arch = {r["arch"]: r for r in rows}
    # planexec: one planner and one final call, no executor call: the look-ups and the total are
    # tool steps (a model step would add two executor calls each).
    assert by_arch["planexec"]["calls"] == 2
    # ReAct: a turn per dependent wave, then the answer; without parallel calls, one more turn.
    assert by_arch["react-parallel"]["calls"] == 4
    assert by_arch["react"]["calls"] == 5
    assert "planexec" in result.output and "react-parallel" in result.output
    # The prompt cache: ReAct re-sends its growing transcript, so from its second turn on the
    # ~800-token look-up results it sent before are read from the cache; planexec's planner
    # and final call are one call each per run, so nothing of theirs was sent before.
    assert set(by_arch["planexec"]["roles"]) == {"planner", "replanner"}
    assert by_arch["planexec"]["cached_input_tokens"] == 0
    react = by_arch["react-parallel"]["roles"]["react"]
    assert 0 < react["cached_input_tokens"] < react["input_tokens"]
    assert react["cached_input_tokens"] % 128 == 0  # OpenAI's rule: 1,024 + 128·k per call
    share = f"{react['cached_input_tokens'] / react['input_tokens']:.0%}"
    table = next(line for line in result.output.splitlines() if "react-parallel │ react" in line)
    assert table.split("│")[-2].strip() == share


def cell(task: str, arch: str, cost: float, wall: float) -> Cell:
    return Cell(task=task, arch=arch, wall_s=wall, cost_usd=cost, input_tokens=1, output_tokens=1)


def test_the_gate_fails_only_on_ratios_more_than_ten_percent_worse() -> None:
    cells = [
        cell("a", "planexec", 1.0, 2.0),
        cell("a", "react-parallel", 2.0, 2.0),
        cell("a", "react", 4.0, 4.0),
        cell("b", "planexec", 1.0, 1.0),
        cell("b", "react-parallel", 1.0, 1.0),
    ]
    current = ratios(cells)
    assert current["a"] == {"cost": 0.5, "wall": 1.0, "cost_vs_react": 0.25, "wall_vs_react": 0.5}

    assert gate_failures(current, baseline_document(current)) == []
    # 9% worse than the baseline passes; 11% worse fails, naming task, metric and limit.
    assert gate_failures(current, {"ratios": {"a": {"cost": 0.5 / 1.09, "wall": 1.0}}}) == []
    failures = gate_failures(current, {"ratios": {"a": {"cost": 0.45, "wall": 1.0 / 1.11}}})
    assert len(failures) == 2
    assert failures[0].startswith("a: planexec/react-parallel cost ratio 0.500 is worse")
    assert failures[1].startswith("a: planexec/react-parallel wall ratio 1.000 is worse")
    assert gate_failures(current, {"ratios": {"gone": {"cost": 1.0}}}) == [
        "gone: not measured in this run"
    ]


def test_the_committed_baseline_covers_every_task() -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_baseline.json"
    baseline = json.loads(path.read_text(encoding="utf-8"))
    assert set(baseline["ratios"]) == {t.name for t in all_tasks()}
    for task_ratios in baseline["ratios"].values():
        assert set(task_ratios) == {"cost", "wall"}


def test_after_warm_up_a_cell_of_each_architecture_imports_nothing_new() -> None:
    # The bench runs one task's three cells in threads at once; a module imported for the first
    # time by two of them together can deadlock on Python's import locks (it did, in CI). So
    # nothing may be left for the cells to import after `warm_up`, in a fresh interpreter.
    script = (
        "import sys\n"
        "from app.bench.run import ARCHS, run_cell, warm_up\n"
        "from app.bench.tasks import all_tasks\n"
        "warm_up()\n"
        "before = set(sys.modules)\n"
        "task = next(t for t in all_tasks() if t.name == 'diamond-short')\n"
        "for arch in ARCHS:\n"
        "    run_cell(task, arch)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
