"""Kill runs at random and resume them until done: are side effects exactly once?

    python benchmarks/kill_loop.py                      # N=100: 60 SQLite + 40 PostgreSQL runs
    python benchmarks/kill_loop.py --sqlite 10 --postgres 0
    python benchmarks/kill_loop.py --signal term --ignore-keys   # SIGTERM at a key-blind callee
    python benchmarks/kill_loop.py --journal-cost       # journaling cost per turn (durable SQLite)

A plan of 8 steps (a, b, c in parallel; d after a; e after b; f after c and d; g after e; h after
f and g), played by a scripted model, where each step makes one side-effecting call: the tool
`post_effect` POSTs to a counting HTTP server this script starts on 127.0.0.1, with the call's
`Idempotency-Key` (tools.step_context.idempotency_key()). The server applies an effect on receipt,
then waits before it answers, so kills land while requests are in flight. In "honour keys" mode
(the default) it applies a key once and answers a repeat with the first answer, as Stripe-style
APIs do; with --ignore-keys every request is an effect.

Each run is a child process (this script with --child) driving the real graph through the CLI's
own code path (signal handling included) on SQLite or PostgreSQL. It is killed with SIGKILL (or
SIGTERM) a random 0..--max-delay seconds after its imports are done (start-up is seconds of
imports on a loaded machine, and a kill there tells nothing); then `resume` is started and killed
again at random, up to --kills kills, and then let finish. A child killed before it recorded its
run (while it opens the database) leaves nothing to resume: the run is started again, and the
table counts those kills.

Printed: kills delivered, runs finished `done`, effects per step (1 = exactly once), duplicated
effects, lost effects, repeated requests (a call whose outcome was unknown, sent again with its
key), and repeated model calls (an executor turn asked of the model more than once).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PLAN = {  # step -> depends_on
    "a": [],
    "b": [],
    "c": [],
    "d": ["a"],
    "e": ["b"],
    "f": ["c", "d"],
    "g": ["e"],
    "h": ["f", "g"],
}
PG_URL = os.environ.get("PLANEXEC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CHILD_TIMEOUT = 120.0  # seconds one child may take before it is killed and counted as hung
EXIT_NOT_FOUND = 4


# --- the callee: a counting HTTP server -------------------------------------------------------


class CountingServer:
    """Counts side effects per (thread, step); dedupes by Idempotency-Key when `honour_keys`."""

    def __init__(self, honour_keys: bool, answer_delay: float) -> None:
        self.honour_keys = honour_keys
        self.answer_delay = answer_delay
        self.lock = threading.Lock()
        self.effects: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.answers: dict[str, str] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = min(int(self.headers.get("Content-Length") or 0), 10_000)
                body = json.loads(self.rfile.read(length) or b"{}")
                answer = server.apply(
                    str(body.get("thread")), str(body.get("step")), self.headers["Idempotency-Key"]
                )
                time.sleep(server.answer_delay)  # the effect exists; the answer is in flight
                data = answer.encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller was killed while it waited: the effect stays applied

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def apply(self, thread: str, step: str, key: str | None) -> str:
        with self.lock:
            self.requests[(thread, step)] += 1
            if self.honour_keys and key and key in self.answers:
                return self.answers[key]
            self.effects[(thread, step)] += 1
            answer = f"effect {self.effects[(thread, step)]} of {step} applied"
            if key:
                self.answers[key] = answer
            return answer

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the run: a scenario and a child process --------------------------------------------------


def write_scenario(path: Path, latency: float) -> Path:
    """The 8-step scenario: each step calls post_effect once, then answers."""
    executor = {
        step: [
            {"tool_calls": [{"name": "post_effect", "args": {"step": step}}], "latency": latency},
            {"content": f"{step} done", "latency": latency},
        ]
        for step in PLAN
    }
    scenario = {
        "name": "kill-loop",
        "goal": "Apply each step's effect once.",
        "tools": [],
        "latency": {"planner": latency, "replanner": latency},
        "planner": {
            "steps": [
                {"id": s, "description": f"Apply effect {s}.", "depends_on": d}
                for s, d in PLAN.items()
            ]
        },
        "executor": executor,
        "replanner": [{"action": "finish", "reason": "all applied", "response": "All applied."}],
    }
    path.write_text(json.dumps(scenario))
    return path


def make_post_effect(server_url: str, thread: str) -> Any:
    """The side-effecting tool: POST with this call's idempotency key."""
    from langchain_core.tools import tool

    from tools.step_context import idempotency_key

    @tool
    def post_effect(step: str) -> str:
        """Apply this step's side effect at the counting service."""
        request = urllib.request.Request(
            f"{server_url}/effect",
            data=json.dumps({"thread": thread, "step": step}).encode(),
            headers={
                "Idempotency-Key": idempotency_key() or "",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    return post_effect


def log_model_calls(path: Path, thread: str) -> None:
    """Append one line per executor model call that returned: (thread, step, attempt, turn)."""
    from app.scripted.chat_model import ScriptedChatModel

    generate = ScriptedChatModel._generate

    def logged(self: Any, messages: list, stop: Any = None, run_manager: Any = None, **kw: Any):
        result = generate(self, messages, stop, run_manager, **kw)
        meta = dict(run_manager.metadata) if run_manager else {}
        if meta.get("planexec_role") == "executor":
            turn = sum(m.type == "ai" for m in messages)
            line = f"{thread}\t{meta.get('planexec_step')}\t{turn}\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        return result

    ScriptedChatModel._generate = logged  # type: ignore[method-assign]


def child(args: argparse.Namespace) -> int:
    """One `run` or `resume` of the run, through the CLI's own driver (signals, exit codes)."""
    log_model_calls(Path(args.model_log), args.thread)
    from app.cli import commands
    from app.context import Context
    from app.runs import runner
    from app.runs.persistence import open_persistence
    from graphs.plan_execute import build_graph

    # Python start-up takes seconds on a loaded machine: the parent starts its kill timer here,
    # so kills land in the run's own work (recording, planner, steps), not in imports.
    os.write(1, b"ready\n")
    ctx = Context.every_role(
        f"scripted:{args.scenario}",
        tools=[],
        workspace=args.workspace,
        max_concurrency=4,
        unknown_outcome=args.unknown_outcome,
    )
    with open_persistence(args.db) as persistence:
        tools = [make_post_effect(args.server, args.thread)]
        persistence.__dict__["graph"] = build_graph(  # the cached graph, with the custom tool
            checkpointer=persistence.checkpointer, store=persistence.store, tools=tools
        )
        if args.child == "run":
            runner.submit_run(persistence, ctx_goal(args.scenario), ctx, args.thread)
        else:
            try:
                runner.run_record(persistence, args.thread)
            except runner.RunNotFound:
                return EXIT_NOT_FOUND
        return commands._drive(  # noqa: SLF001 - the CLI's driver is what is under test
            persistence,
            args.thread,
            True,
            lambda on_event: runner.resume_run(persistence, args.thread, on_event),
        )


def ctx_goal(scenario: str) -> str:
    return json.loads(Path(scenario).read_text())["goal"]


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class Tally:
    runs: int = 0
    finished: int = 0
    kills: int = 0
    kills_before_record: int = 0
    hung: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass
class Setup:
    server: CountingServer
    scenario: Path
    workdir: Path
    model_log: Path
    sig: signal.Signals
    kills_per_run: int
    max_delay: float
    unknown_outcome: str = "repeat"
    rng: random.Random = field(default_factory=random.Random)


def _spawn(setup: Setup, mode: str, db: str, thread: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--db",
        db,
        "--thread",
        thread,
        "--scenario",
        str(setup.scenario),
        "--server",
        setup.server.url,
        "--model-log",
        str(setup.model_log),
        "--workspace",
        str(setup.workdir / "ws"),
        "--unknown-outcome",
        setup.unknown_outcome,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLANEXEC_", "OPENAI_"))}
    env["LANGSMITH_TRACING"] = "false"
    return subprocess.Popen(
        cmd, cwd=setup.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _wait_ready(proc: subprocess.Popen, timeout: float) -> None:
    """Wait until the child has imported everything (its "ready" line) or ended; then drain its
    stdout in the background so its JSON events never fill the pipe."""
    assert proc.stdout is not None
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(b"ready"):
                ready.set()
        ready.set()  # ended without it

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(timeout)


def one_run(setup: Setup, db: str, thread: str, tally: Tally) -> None:
    """Start the run, kill it at random up to `kills_per_run` times, resume until it is done."""
    tally.runs += 1
    mode, kills = "run", 0
    for _ in range(setup.kills_per_run + 20):  # bounded: a run that never finishes is reported
        proc = _spawn(setup, mode, db, thread)
        delay = setup.rng.uniform(0.0, setup.max_delay) if kills < setup.kills_per_run else None
        # Always drain its stdout (a child blocked on a full pipe would hang); wait for its
        # imports only when it is to be killed.
        _wait_ready(proc, CHILD_TIMEOUT if delay is not None else 0)
        try:
            proc.wait(timeout=delay if delay is not None else CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            if delay is None:
                proc.kill()
                proc.wait()
                tally.hung += 1
                return
            proc.send_signal(setup.sig)
            kills += 1
            tally.kills += 1
            try:
                proc.wait(timeout=CHILD_TIMEOUT)  # SIGTERM: the steps in flight finish first
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        code = proc.returncode
        tally.exits[code] += 1
        if code == EXIT_NOT_FOUND and mode == "resume":
            tally.kills_before_record += 1
            mode = "run"  # killed before the run was recorded: nothing to resume, start it
            continue
        if code == 0:
            tally.finished += 1
            return
        if code not in (-signal.SIGKILL, -signal.SIGTERM, 130, 143) and proc.stderr:
            print(f"  {thread}: exit {code}: {proc.stderr.read().decode()[-800:]}", file=sys.stderr)
        mode = "resume"


def _set_up(db: str) -> None:
    """Create the tables before the first child, as a deployed database has them: LangGraph's
    SqliteStore.setup() migrates in several commits, and a kill between two leaves a database
    that no later setup() can open ("duplicate column name: ttl_minutes")."""
    from app.runs.persistence import open_persistence

    with open_persistence(db):
        pass


def postgres_url() -> tuple[str, str]:
    """A fresh schema on the PostgreSQL server, and a URL whose sessions use it."""
    import psycopg

    schema = f"planexec_kill_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    return schema, f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def kill_loop(
    *,
    sqlite_runs: int,
    postgres_runs: int,
    kills_per_run: int = 2,
    sig: signal.Signals = signal.SIGKILL,
    honour_keys: bool = True,
    unknown_outcome: str = "repeat",
    max_delay: float = 3.0,
    latency: float = 0.1,
    answer_delay: float = 0.3,
    seed: int | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the loop; return the tallies per database and the effects counted at the callee."""
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="planexec-kill-loop-")
        workdir = Path(own_tmp.name)
    server = CountingServer(honour_keys, answer_delay)
    setup = Setup(
        server=server,
        scenario=write_scenario(workdir / "kill_loop.json", latency),
        workdir=workdir,
        model_log=workdir / "model_calls.tsv",
        sig=sig,
        kills_per_run=kills_per_run,
        max_delay=max_delay,
        unknown_outcome=unknown_outcome,
        rng=random.Random(seed),
    )
    tallies: dict[str, Tally] = {}
    threads: dict[str, list[str]] = {}
    try:
        for backend, n in (("sqlite", sqlite_runs), ("postgres", postgres_runs)):
            if not n:
                continue
            tally, schema = Tally(), None
            if backend == "sqlite":
                db = str(workdir / "runs.sqlite")
            else:
                schema, db = postgres_url()
            _set_up(db)
            started = time.perf_counter()
            try:
                for i in range(n):
                    thread = f"{backend}-{i}-{secrets.token_hex(2)}"
                    threads.setdefault(backend, []).append(thread)
                    one_run(setup, db, thread, tally)
                    effects = [server.effects[(thread, step)] for step in PLAN]
                    print(  # progress, so a long loop stopped early still tells something
                        f"  {thread}: kills so far {tally.kills}, finished {tally.finished}, "
                        f"effects per step {effects}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                if schema:
                    drop_schema(schema)
            tally.seconds = time.perf_counter() - started
            tallies[backend] = tally
        calls = Counter()
        if setup.model_log.exists():
            for line in setup.model_log.read_text().splitlines():
                calls[tuple(line.split("\t"))] += 1
        return _summary(tallies, threads, server, calls)
    finally:
        server.close()
        if own_tmp is not None:
            own_tmp.cleanup()


def _summary(
    tallies: dict[str, Tally], threads: dict[str, list[str]], server: CountingServer, calls: Counter
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend, tally in tallies.items():
        effects = Counter()
        duplicates = lost = repeated_requests = 0
        for thread in threads[backend]:
            for step in PLAN:
                n = server.effects[(thread, step)]
                effects[n] += 1
                duplicates += max(0, n - 1)
                lost += n == 0
                repeated_requests += server.requests[(thread, step)] - n
        own = {k: v for k, v in calls.items() if k[0] in set(threads[backend])}
        out[backend] = {
            "runs": tally.runs,
            "finished": tally.finished,
            "kills": tally.kills,
            "kills_before_record": tally.kills_before_record,
            "hung": tally.hung,
            "effects_per_step": dict(sorted(effects.items())),
            "duplicates": duplicates,
            "lost": lost,
            "repeated_requests": repeated_requests,
            "repeated_model_calls": sum(v - 1 for v in own.values()),
            "exit_codes": dict(tally.exits),
            "seconds": round(tally.seconds, 1),
        }
    return out


def print_table(summary: dict[str, Any], title: str) -> None:
    rows = [
        ("runs", "runs"),
        ("finished done", "finished"),
        ("kills delivered", "kills"),
        ("  of them before the run was recorded", "kills_before_record"),
        ("effects per step (count: steps)", "effects_per_step"),
        ("duplicated effects", "duplicates"),
        ("lost effects", "lost"),
        ("requests repeated with their key", "repeated_requests"),
        ("repeated model calls", "repeated_model_calls"),
        ("hung children", "hung"),
        ("child exit codes", "exit_codes"),
        ("seconds", "seconds"),
    ]
    backends = list(summary)
    print(f"\n{title}")
    print(f"{'':40}" + "".join(f"{b:>22}" for b in backends))
    for label, key in rows:
        print(f"{label:40}" + "".join(f"{str(summary[b][key]):>22}" for b in backends))


# --- journaling cost --------------------------------------------------------------------------


def journal_cost(repeats: int = 15) -> None:
    """Per-turn cost of the turn journal on durable SQLite: the 8-step plan, zero latency, with
    and without the turn journal (StepTurns writing to no store), runs interleaved."""
    with tempfile.TemporaryDirectory(prefix="planexec-journal-cost-") as tmp:
        _journal_cost(Path(tmp), repeats)


def _journal_cost(tmp: Path, repeats: int) -> None:
    from langchain_core.tools import tool

    from app.context import Context
    from app.runs.persistence import open_persistence
    from graphs import journal
    from graphs.plan_execute import build_graph

    scenario = write_scenario(tmp / "s.json", 0.0)
    ctx = Context.every_role(f"scripted:{scenario}", tools=[], workspace=str(tmp / "ws"))

    @tool
    def post_effect(step: str) -> str:
        """Apply this step's side effect (no network: the cost measured is planexec's)."""
        return f"{step} applied"

    real_turns = journal.StepJournal.turns

    def no_turns(self: Any, step_id: str, attempt: int) -> Any:
        return journal.StepTurns(None, ())

    times: dict[str, list[float]] = {"journal": [], "no journal": []}
    with open_persistence(str(tmp / "runs.sqlite")) as persistence:
        graph = build_graph(
            checkpointer=persistence.checkpointer, store=persistence.store, tools=[post_effect]
        )
        for i in range(-2, repeats * 2):  # two warm-up runs (imports, tokenizer), not counted
            variant = "journal" if i % 2 else "no journal"
            journal.StepJournal.turns = real_turns if variant == "journal" else no_turns
            config = {"configurable": {"thread_id": f"cost-{i}"}}
            started = time.perf_counter()
            graph.invoke({"goal": "g"}, config=config, context=ctx, durability="sync")
            if i >= 0:
                times[variant].append(time.perf_counter() - started)
    journal.StepJournal.turns = real_turns
    # Per step: the exec count, 2 model replies, the tool's "started" and "done" records.
    turns = len(PLAN) * 3  # model replies and tool results
    with_j, without = statistics.median(times["journal"]), statistics.median(times["no journal"])
    print(f"\njournaling cost, durable SQLite, {repeats} runs each of {len(PLAN)} steps")
    print(f"{'median run with turn journal':44}{with_j * 1000:10.1f} ms")
    print(f"{'median run without':44}{without * 1000:10.1f} ms")
    print(f"{'ratio with / without':44}{with_j / without:10.2f}")
    per_turn = (with_j - without) / turns * 1000
    print(f"{'cost per turn (model reply or tool result)':44}{per_turn:10.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", type=int, default=60)
    parser.add_argument("--postgres", type=int, default=40)
    parser.add_argument("--kills", type=int, default=2, help="kills per run before it may finish")
    parser.add_argument("--signal", choices=("kill", "term"), default="kill")
    parser.add_argument("--ignore-keys", action="store_true", help="the callee ignores keys")
    parser.add_argument("--unknown-outcome", choices=("repeat", "surprise"), default="repeat")
    parser.add_argument(
        "--max-delay", type=float, default=3.0, help="latest kill, seconds after start-up"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--journal-cost", action="store_true")
    parser.add_argument("--repeats", type=int, default=15, help="runs per variant (journal cost)")
    # child mode (internal)
    parser.add_argument("--child", choices=("run", "resume"))
    for name in ("--db", "--thread", "--scenario", "--server", "--model-log", "--workspace"):
        parser.add_argument(name)
    args = parser.parse_args()
    if args.child:
        sys.exit(child(args))
    if args.journal_cost:
        journal_cost(args.repeats)
        return
    sig = signal.SIGKILL if args.signal == "kill" else signal.SIGTERM
    summary = kill_loop(
        sqlite_runs=args.sqlite,
        postgres_runs=args.postgres,
        kills_per_run=args.kills,
        sig=sig,
        honour_keys=not args.ignore_keys,
        unknown_outcome=args.unknown_outcome,
        max_delay=args.max_delay,
        seed=args.seed,
    )
    keys = "ignores keys" if args.ignore_keys else "honours keys"
    print_table(
        summary, f"kill loop: {sig.name}, callee {keys}, unknown outcome: {args.unknown_outcome}"
    )


if __name__ == "__main__":
    main()
