"""Measure the benchmark's cells, print them, and gate on their ratios.

The three architectures of one task run at the same time (threads; model latency is slept, so
they overlap well), tasks one after another: a task's cells share the machine's load, and the
gate compares ratios from one run, never absolute times, so a slow CI machine does not fail it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.bench.latency import FIRST_TOKEN_S, PER_OUTPUT_TOKEN_S
from app.bench.run import ARCHS, Cell, run_cell, warm_up
from app.bench.tasks import Task

BASELINE_TOLERANCE = 0.10  # a ratio may get this much worse than its baseline before CI fails
GATED = ("cost", "wall")  # planexec ÷ react-parallel


def measure(
    tasks: Sequence[Task],
    *,
    repeat: int = 1,
    max_concurrency: int | None = None,
    on_cell: Callable[[Cell], None] | None = None,
) -> list[Cell]:
    """Every (task, architecture) cell, `repeat` times; the fastest run of each is kept (tokens
    and cost are the same every time: the scripts are deterministic)."""
    best: dict[tuple[str, str], Cell] = {}
    warm_up()
    with ThreadPoolExecutor(max_workers=len(ARCHS), thread_name_prefix="bench") as pool:
        for task in tasks:
            for _ in range(repeat):
                futures = [
                    pool.submit(run_cell, task, arch, max_concurrency=max_concurrency)
                    for arch in ARCHS
                ]
                for future in futures:
                    cell = future.result()
                    if on_cell:
                        on_cell(cell)
                    key = (cell.task, cell.arch)
                    if key not in best or cell.wall_s < best[key].wall_s:
                        best[key] = cell
    return list(best.values())


def ratios(cells: Iterable[Cell]) -> dict[str, dict[str, float]]:
    """Per task: planexec's cost and wall divided by each baseline's."""
    by_key = {(c.task, c.arch): c for c in cells}
    out: dict[str, dict[str, float]] = {}
    for (task, arch), cell in by_key.items():
        if arch != "planexec":
            continue
        row: dict[str, float] = {}
        for base, suffix in (("react-parallel", ""), ("react", "_vs_react")):
            other = by_key.get((task, base))
            if other is None:
                continue
            row[f"cost{suffix}"] = round(cell.cost_usd / other.cost_usd, 4)
            row[f"wall{suffix}"] = round(cell.wall_s / other.wall_s, 4)
        out[task] = row
    return out


def gate_failures(
    current: dict[str, dict[str, float]],
    baseline: dict[str, Any],
    tolerance: float = BASELINE_TOLERANCE,
) -> list[str]:
    """Each task whose cost or wall ratio to react-parallel is more than `tolerance` worse than
    the baseline's (a baseline task missing from this run counts too). Empty: the gate passes."""
    failures = []
    for task, base in sorted(baseline.get("ratios", {}).items()):
        now = current.get(task)
        if now is None:
            failures.append(f"{task}: not measured in this run")
            continue
        for metric in GATED:
            if metric not in base:
                continue
            limit = base[metric] * (1 + tolerance)
            if now.get(metric, float("inf")) > limit:
                failures.append(
                    f"{task}: planexec/react-parallel {metric} ratio {now.get(metric):.3f} is "
                    f"worse than the baseline {base[metric]:.3f} by more than "
                    f"{tolerance:.0%} (limit {limit:.3f})"
                )
    return failures


def baseline_document(current: dict[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "about": "planexec ÷ react-parallel ratios from `planexec bench --quick`; CI fails when "
        f"one gets more than {BASELINE_TOLERANCE:.0%} worse. Update: "
        "planexec bench --quick --write-baseline benchmarks/bench_baseline.json",
        "ratios": {task: {m: r[m] for m in GATED if m in r} for task, r in sorted(current.items())},
    }


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the bench baseline {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("ratios"), dict):
        raise ValueError(f"{str(path)!r} is not a bench baseline (no 'ratios' object)")
    return data


def print_table(console: Any, cells: Sequence[Cell]) -> None:
    from rich.table import Table

    order = {a: i for i, a in enumerate(ARCHS)}
    table = Table(
        title="planexec vs ReAct (create_agent): same tools, tokens, prices and latency model",
        caption=f"model latency simulated: {FIRST_TOKEN_S} s + {PER_OUTPUT_TOKEN_S * 1000:g} ms "
        "per output token; tokens counted (o200k) over the prompts each design sends; "
        "gpt-4o / gpt-4o-mini prices",
    )
    for column, justify in (
        ("task", "left"),
        ("arch", "left"),
        ("calls 4o/mini", "right"),
        ("in tok", "right"),
        ("cached", "right"),
        ("out tok", "right"),
        ("cost $", "right"),
        ("wall s", "right"),
        ("cost ÷", "right"),
        ("wall ÷", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    by_task: dict[str, list[Cell]] = {}
    for cell in cells:
        by_task.setdefault(cell.task, []).append(cell)
    for task, group in by_task.items():
        group.sort(key=lambda c: order[c.arch])
        pe = next((c for c in group if c.arch == "planexec"), None)
        for cell in group:
            cost_ratio = wall_ratio = ""
            if pe is not None and cell.arch != "planexec":
                cost_ratio = f"{pe.cost_usd / cell.cost_usd:.2f}x"
                wall_ratio = f"{pe.wall_s / cell.wall_s:.2f}x"
            tiers = "/".join(str(n) for n in cell.calls_by_tier.values())
            table.add_row(
                task if cell is group[0] else "",
                cell.arch,
                tiers,
                str(cell.input_tokens),
                _share(cell.cached_input_tokens, cell.input_tokens),
                str(cell.output_tokens),
                f"{cell.cost_usd:.5f}",
                f"{cell.wall_s:.2f}",
                cost_ratio,
                wall_ratio,
            )
        table.add_section()
    console.print(table)
    console.print(
        "cost ÷ / wall ÷: planexec divided by that row's architecture (lower is better); "
        "cached: share of the input tokens read from the prompt cache"
    )
    console.print(cache_table(cells))


def cache_by_role(cells: Iterable[Cell]) -> dict[tuple[str, str], dict[str, int]]:
    """Per (architecture, role), over every task measured: calls, input tokens and the cached
    part of them."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for cell in cells:
        for role, tokens in cell.roles.items():
            sums = out.setdefault((cell.arch, role), {})
            for key, value in tokens.items():
                sums[key] = sums.get(key, 0) + value
    return out


def cache_table(cells: Sequence[Cell]) -> Any:
    """How much of each role's input the prompt cache served, per architecture and role."""
    from rich.table import Table

    table = Table(
        title="prompt cache: input tokens read from the cache, per architecture and role",
        caption="OpenAI's rule, per run: a prompt prefix of 1,024+ tokens (in 128-token steps) "
        "sent earlier in the same run is cached, and billed at the cached rate",
    )
    for column in ("arch", "role", "calls", "in tok", "cached tok", "cached"):
        table.add_column(column, justify="left" if column in ("arch", "role") else "right")
    order = {a: i for i, a in enumerate(ARCHS)}
    sums = cache_by_role(cells)
    for arch, role in sorted(sums, key=lambda k: (order.get(k[0], len(order)), k[1])):
        tokens = sums[(arch, role)]
        table.add_row(
            arch,
            role,
            str(tokens.get("calls", 0)),
            str(tokens.get("input_tokens", 0)),
            str(tokens.get("cached_input_tokens", 0)),
            _share(tokens.get("cached_input_tokens", 0), tokens.get("input_tokens", 0)),
        )
    return table


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"
