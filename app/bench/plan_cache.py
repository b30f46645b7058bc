"""`planexec bench --plan-cache`: what the plan cache saves on a second run of a templated task.

Each task runs through planexec twice as the same template (`Context.template`), on one store: the
first run pays for the planner and stores its plan, the second takes the plan from the cache. Same
scripted models, latency model and price table as the main benchmark (app/bench/run.py), so the
difference is the planner call that the cache removes.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.bench.run import planexec_scenario
from app.bench.tasks import Task


@dataclass
class CacheRun:
    """One planexec run of a templated task."""

    wall_s: float
    cost_usd: float
    planner_calls: int
    plan_cache: list[str]  # the plan_cache events' actions, in order


@dataclass
class CacheRow:
    task: str
    first: CacheRun
    second: CacheRun

    def row(self) -> dict[str, Any]:
        """The `--json` row."""
        return {
            "task": self.task,
            **{f"first_{k}": v for k, v in _fields(self.first).items()},
            **{f"second_{k}": v for k, v in _fields(self.second).items()},
        }


def _fields(run: CacheRun) -> dict[str, Any]:
    return {
        "wall_s": round(run.wall_s, 3),
        "cost_usd": round(run.cost_usd, 8),
        "planner_calls": run.planner_calls,
        "plan_cache": run.plan_cache,
    }


def measure_plan_cache(task: Task, *, repeat: int = 1) -> CacheRow:
    """The task run twice as one template, `repeat` times on fresh stores; fastest kept."""
    rows = [_twice(task) for _ in range(repeat)]
    return CacheRow(
        task.name,
        min((r[0] for r in rows), key=lambda r: r.wall_s),
        min((r[1] for r in rows), key=lambda r: r.wall_s),
    )


def _twice(task: Task) -> tuple[CacheRun, CacheRun]:
    from langgraph.store.memory import InMemoryStore

    store = InMemoryStore()  # shared by both runs, as a database is between CLI runs
    with tempfile.TemporaryDirectory(prefix="planexec-bench-") as tmp:
        scenario = Path(tmp) / f"{task.name}.json"
        scenario.write_text(json.dumps(planexec_scenario(task)), encoding="utf-8")
        first = _run(task, scenario, store, Path(tmp))
        second = _run(task, scenario, store, Path(tmp))
    if second.plan_cache != ["hit"]:
        raise RuntimeError(f"the second run of {task.name} did not use the cache: {second}")
    return first, second


def _run(task: Task, scenario: Path, store: Any, tmp: Path) -> CacheRun:
    from langgraph.checkpoint.memory import InMemorySaver

    from app.bench.tasks import lookup_tool
    from app.context import Context
    from graphs.plan_execute import build_graph

    ctx = Context.every_role(
        f"scripted:{scenario}",
        tools=["calculator"],
        workspace=str(tmp / "ws"),
        template=f"bench-{task.name}",
    )
    graph = build_graph(checkpointer=InMemorySaver(), store=store, tools=[lookup_tool(task)])
    config = {"configurable": {"thread_id": uuid.uuid4().hex}}
    started = time.perf_counter()
    events = list(graph.stream({"goal": task.goal}, config, context=ctx, stream_mode="custom"))
    wall = time.perf_counter() - started
    state = graph.get_state(config).values
    if state.get("status") != "done":
        raise RuntimeError(f"planexec did not finish {task.name}: {state.get('reason')}")
    usage = state.get("usage", {})
    return CacheRun(
        wall_s=wall,
        cost_usd=sum(u.get("cost_usd") or 0.0 for u in usage.values()),
        planner_calls=usage.get("planner", {}).get("calls", 0),
        plan_cache=[e["action"] for e in events if e.get("event") == "plan_cache"],
    )


def print_plan_cache_table(console: Console, rows: list[CacheRow]) -> None:
    table = Table(title="plan cache: second run of a templated task vs the first (planexec)")
    columns = ("task", "planner calls", "cost 1st", "cost 2nd", "cost saved", "wall 1st",
               "wall 2nd", "wall saved")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "task" else "right")
    for row in rows:
        a, b = row.first, row.second
        table.add_row(
            row.task,
            f"{a.planner_calls} → {b.planner_calls}",
            f"${a.cost_usd:.4f}",
            f"${b.cost_usd:.4f}",
            f"{1 - b.cost_usd / a.cost_usd:.0%}" if a.cost_usd else "-",
            f"{a.wall_s:.2f} s",
            f"{b.wall_s:.2f} s",
            f"{1 - b.wall_s / a.wall_s:.0%}" if a.wall_s else "-",
        )
    console.print(table)
