"""Integration fixtures: a real `langgraph dev` server, started once per test session.

`langgraph_server` runs `python -m langgraph_cli dev` from the repository root (where
langgraph.json is), without reload or browser, on a free port, with no API keys, no tracing, no
analytics and no version check, so nothing leaves the machine. It is started on first use only,
and stopped (its process group: SIGTERM, then SIGKILL) when the session ends.

The server keeps its state in `.langgraph_api/` under its working folder, and the LangGraph CLI
offers no way to turn that off; so it runs in a temporary folder, from a copy of langgraph.json
whose paths point back into the repository, and writes nothing there. Create fresh threads
(tagged with `TEST_METADATA`) and delete them when done all the same.

When a test that used the server fails, the tail of the server's log is added to the report.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import clean_env

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 60.0  # seconds until GET /ok must answer
STOP_TIMEOUT = 15.0  # seconds a SIGTERM-ed server gets before SIGKILL
LOG_TAIL_CHARS = 12_000
TEST_METADATA = {"created_by": "planexec-integration-tests"}

# Credentials that would let the server (or the SDK client) reach LangSmith or a license server.
_NETWORK_SECRETS = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGGRAPH_API_KEY",
)
# A real MCP server (FastMCP) the server process starts over stdio when a run uses its tools.
MCP_MATH_STDIO = {
    "transport": "stdio",
    "command": sys.executable,
    "args": [str(REPO / "tests" / "mcp_math_server.py"), "stdio"],
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
SERVER_CEILINGS = "max_concurrency=64,model_timeout_s=600"
_SERVER_KEY = pytest.StashKey["LangGraphServer"]()


@dataclass(frozen=True)
class LangGraphServer:
    """A running `langgraph dev`: its base URL and the file its output goes to."""

    url: str
    log_path: Path

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        return _tail(self.log_path, chars)


def server_env() -> dict[str, str]:
    """The test env (no OPENAI_*/PLANEXEC_*, tracing off) minus credentials, telemetry off."""
    env = {k: v for k, v in clean_env().items() if k not in _NETWORK_SECRETS}
    env.update(
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",  # langgraph_cli/analytics.py: no usage ping per command
        LANGGRAPH_NO_VERSION_CHECK="true",  # langgraph_api/cli.py: no PyPI version lookup
        # The deployment's MCP servers (tools/mcp.py): runs that name mcp:math get its tools.
        PLANEXEC_MCP_SERVERS=json.dumps({"math": MCP_MATH_STDIO}),
        # Ceilings above every value the server tests ask for (app/limits.py): a caller asking
        # for more is refused (tests/integration/test_context_entry_points.py).
        PLANEXEC_CEILINGS=SERVER_CEILINGS,
    )
    return env


@pytest.fixture(scope="session")
def langgraph_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LangGraphServer]:
    """A `langgraph dev` server for the whole session, serving this repo's langgraph.json."""
    proc, server = _start(tmp_path_factory.mktemp("langgraph-server"))
    request.config.stash[_SERVER_KEY] = server
    try:
        yield server
    finally:
        _stop(proc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    server = item.config.stash.get(_SERVER_KEY, None)
    if report.failed and server is not None and "langgraph_server" in item.fixturenames:
        report.sections.append(("langgraph dev log (tail)", server.log_tail()))
    return report


def _start(log_dir: Path, attempts: int = 3) -> tuple[subprocess.Popen[bytes], LangGraphServer]:
    """Start the server; a port taken between choosing and binding it costs one more try."""
    for attempt in range(1, attempts + 1):
        port = _free_port()
        log_path = log_dir / f"server-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "langgraph_cli",
                    "dev",
                    "--no-browser",
                    "--no-reload",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=_config_outside_repo(log_dir),
                # The repository stays importable (tools by import path, tests.custom_tools).
                env={**server_env(), "PYTHONPATH": str(REPO)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        server = LangGraphServer(url=f"http://127.0.0.1:{port}", log_path=log_path)
        try:
            started = _wait_until_ok(proc, server)
        except BaseException:
            _stop(proc)
            raise
        if started:
            return proc, server
        _stop(proc)
        if "address already in use" not in server.log_tail().lower():
            break
    pytest.fail(
        f"langgraph dev exited with code {proc.returncode} before answering /ok.\n"
        f"--- server log ({server.log_path}) ---\n{server.log_tail()}",
        pytrace=False,
    )


def _config_outside_repo(folder: Path) -> Path:
    """`folder` with a langgraph.json like the repository's, its paths made absolute."""
    config = json.loads((REPO / "langgraph.json").read_text(encoding="utf-8"))

    def absolute(path: str) -> str:
        return str((REPO / path).resolve()) if path.startswith(".") else path

    config["dependencies"] = [absolute(d) for d in config.get("dependencies", [])]
    config["graphs"] = {name: absolute(spec) for name, spec in config.get("graphs", {}).items()}
    (folder / "langgraph.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def _wait_until_ok(proc: subprocess.Popen[bytes], server: LangGraphServer) -> bool:
    """True once GET /ok answers 200; False if the process exits first; fails on timeout."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{server.url}/ok", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(
        f"langgraph dev did not answer {server.url}/ok within {STARTUP_TIMEOUT:.0f} s.\n"
        f"--- server log ({server.log_path}) ---\n{server.log_tail()}",
        pytrace=False,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the server's pid
    except (ProcessLookupError, PermissionError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return _ANSI.sub("", text)[-chars:]
