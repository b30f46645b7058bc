"""Shared test helpers: run the real CLI as a subprocess and read its JSON event lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli.commands", *args]


def clean_env() -> dict[str, str]:
    """No API keys, no tracing, no PLANEXEC_* leaking from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLANEXEC_", "OPENAI_"))}
    env.update(LANGSMITH_TRACING="false", LANGCHAIN_TRACING_V2="false", PYTHONUNBUFFERED="1")
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """Run `planexec ARGS` to the end in `cwd`, with a clean environment unless `env` is given."""
    return subprocess.run(
        cli(*args),
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def run_json(*args: str, cwd: Path, timeout: float = 120) -> tuple[int, list[dict]]:
    """Run a CLI command with --json to the end; its exit code and events."""
    proc = run_cli(*args, "--json", cwd=cwd, timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.stderr.count("Traceback") == 0, proc.stderr
    return proc.returncode, events


def run_until_then_kill(
    *args: str, cwd: Path, until: Callable[[list[dict]], bool], timeout: float = 60
) -> list[dict]:
    """Start a CLI run, read events until `until(events)` holds, then SIGKILL it."""
    proc = subprocess.Popen(
        cli(*args, "--json"), cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, text=True
    )
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append(json.loads(line))
            if until(events):
                break
            assert time.monotonic() < deadline, "condition not reached in time"
        else:
            raise AssertionError(f"run ended before the kill point; events: {events}")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return events


def fanout_args(workspace: Path, db: str, thread: str) -> tuple[str, ...]:
    """CLI arguments to run tests/scenarios/fanout.json: fast, medium and slow in parallel,
    after_fast after fast, join after all; each step appends its id to workspace/log.txt."""
    scenario = str(SCENARIOS / "fanout.json")
    return (
        "run",
        "go",
        "--scenario",
        scenario,
        "--workspace",
        str(workspace),
        "--db",
        db,
        "--thread",
        thread,
    )


def slow_alone_in_flight(events: list[dict]) -> bool:
    """In a fanout run: fast, after_fast and medium are done; slow (1.5 s a turn) still runs."""
    return {"fast", "after_fast", "medium"} <= set(finished_ids(events))


def signal_fanout_run(tmp_path: Path, db: str, thread: str, sig: int) -> tuple[int, str]:
    """Start a fanout run from the CLI, send it `sig` once slow is the only step in flight (join
    waits for it), and return its exit code and stderr."""
    proc = subprocess.Popen(
        cli(*fanout_args(tmp_path / "ws", db, thread), "--json"),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        events.append(json.loads(line))
        if slow_alone_in_flight(events):
            break
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    return proc.returncode, stderr


def of_kind(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("event") == kind]


def started_ids(events: list[dict]) -> list[str]:
    return [e["step_id"] for e in of_kind(events, "step_started")]


def finished_ids(events: list[dict], recovered: bool | None = None) -> list[str]:
    return [
        e["step_id"]
        for e in of_kind(events, "step_finished")
        if recovered is None or e.get("recovered") == recovered
    ]


def instant_demo(tmp_path: Path) -> Path:
    """The bundled demo scenario with every latency removed (same replies, same tokens)."""
    from app.scripted.scenarios import BUNDLED_DIR

    script = json.loads((BUNDLED_DIR / "demo.json").read_text(encoding="utf-8"))
    script["latency"] = {}
    script.pop("token_latency", None)
    for turns in script["executor"].values():
        for turn in turns:
            turn.pop("latency", None)
    path = tmp_path / "instant_demo.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return path
