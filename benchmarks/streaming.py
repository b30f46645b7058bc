"""Steps that start while the plan streams, against steps that wait for the whole plan.

    python benchmarks/streaming.py            # median of 3 runs per cell
    python benchmarks/streaming.py --quick    # one run per cell

Fan-out plans (N independent look-ups, then a total) run through the real graph with the SQLite
checkpointer (durability "sync"), max_concurrency 10, every model call simulated as 0.35 s to
the first token + 12 ms per output token (the scripted model streams its reply in pieces on that
schedule; unstreamed, the reply arrives whole at the end, so both take the same model time).
Token counts are real (o200k BPE over the prompts the graph builds). Each look-up is two executor
turns (a calculator call, then the answer). Printed: seconds from the start of the run to the first
step start, to the complete plan, and to the end, streamed (`Context.stream_plan`, the default)
and not, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.context import Context  # noqa: E402
from app.runs.persistence import open_persistence  # noqa: E402
from graphs.plan_execute import build_graph  # noqa: E402

FIRST_TOKEN_S = 0.35
PER_TOKEN_S = 0.012
TASKS = {"fan-out 6 + total": 6, "fan-out 10 + total": 10}


def scenario(n: int) -> dict:
    steps = [
        {
            "id": f"p{i}",
            "description": f"Look up the unit price of product P-{1000 + i} in the catalogue.",
            "depends_on": [],
        }
        for i in range(1, n + 1)
    ]
    steps.append(
        {
            "id": "total",
            "description": "Add up the unit prices of all the products looked up.",
            "depends_on": [s["id"] for s in steps],
        }
    )
    lookup = [
        {"tool_calls": [{"name": "calculator", "args": {"expression": "12.5 * 1"}}]},
        {"content": "The unit price is {last_tool_result} EUR."},
    ]
    roles = ("planner", "executor", "replanner")
    return {
        "name": f"stream_fanout_{n}",
        "goal": f"Price {n} products and total them.",
        "tools": ["calculator"],
        "latency": {role: FIRST_TOKEN_S for role in roles},
        "token_latency": {role: PER_TOKEN_S for role in roles},
        "planner": {"steps": steps},
        "executor": {
            **{s["id"]: lookup for s in steps[:-1]},
            "total": [{"content": f"The total is {12.5 * n} EUR."}],
        },
        "replanner": [
            {"action": "finish", "reason": "all priced", "response": f"{12.5 * n} EUR in all."}
        ],
    }


def run_once(path: Path, db: str, streamed: bool) -> tuple[float, float, float]:
    """(first step start, plan complete, end), in seconds from the start of the run."""
    ctx = Context.every_role(
        f"scripted:{path}", tools=["calculator"], max_concurrency=10, stream_plan=streamed
    )
    with open_persistence(db) as p:
        graph = build_graph(checkpointer=p.checkpointer, store=p.store)
        config = {"configurable": {"thread_id": f"bench-{time.monotonic_ns()}"}}
        start = time.time()
        first = plan = 0.0
        for event in graph.stream(
            {"goal": "benchmark"}, config, context=ctx, stream_mode="custom", durability="sync"
        ):
            if event["event"] == "step_started" and not first:
                first = event["at"] - start
            elif event["event"] == "plan":
                plan = event["at"] - start
        end = time.time() - start
        state = graph.get_state(config).values
    assert state["status"] == "done", state.get("reason")
    return first, plan, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per cell")
    args = parser.parse_args()
    reps = 1 if args.quick else 3
    print(
        f"\nEvery model call: {FIRST_TOKEN_S} s + {PER_TOKEN_S * 1000:.0f} ms per output token; "
        f"max_concurrency 10; SQLite, durability=sync; median of {reps}\n"
    )
    header = (
        f"{'task':<20}{'plan':<10}{'first step s':>13}{'plan done s':>12}{'wall s':>8}"
        f"{'first ratio':>12}{'wall ratio':>11}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.sqlite")
        for task, n in TASKS.items():
            path = Path(tmp) / f"fanout_{n}.json"
            path.write_text(json.dumps(scenario(n)))
            run_once(path, db, True)  # warm-up: imports, tokenizer tables, schema
            rows = {}
            for streamed in (False, True):
                runs = [run_once(path, db, streamed) for _ in range(reps)]
                rows[streamed] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
            for streamed in (False, True):
                first, plan, wall = rows[streamed]
                ratios = ""
                if streamed:
                    whole = rows[False]
                    ratios = f"{first / whole[0]:>12.2f}{wall / whole[2]:>11.2f}"
                mode = "streamed" if streamed else "whole"
                print(f"{task:<20}{mode:<10}{first:>13.2f}{plan:>12.2f}{wall:>8.2f}{ratios}")
    print("\nratios: streamed / whole plan (lower is better)")


if __name__ == "__main__":
    main()
