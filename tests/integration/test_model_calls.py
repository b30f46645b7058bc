# ruff: noqa: F811  (fixtures are imported, then named as parameters)
"""Model calls that end, and streamed runs that count their tokens, with the real
langchain-openai client over HTTP: a black-hole endpoint (accepts, never answers), and the
scenario server (app/scripted/server.py) streaming or failing on purpose."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessageChunk
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.runs.demo import demo_context
from graphs.plan_execute import build_graph
from graphs.retries import MODEL_NODE_ATTEMPTS
from tests.integration.test_openai_endpoint import (  # noqa: F401 (the autouse env fixture)
    FAST,
    GOAL,
    MODELS,
    assert_done,
    endpoint,
    openai_env,
    recorded_usage,
    served_usage,
)

pytestmark = pytest.mark.integration


class BlackHole:
    """A real listening socket that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in [*self.accepted, self.sock]:
            conn.close()


@pytest.fixture
def black_hole(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlackHole]:
    hole = BlackHole()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{hole.port}/v1")
    yield hole
    hole.close()


def run(
    tmp_path: Path, mode: str = "invoke", chunks: list | None = None, **context: object
) -> dict:
    ctx = demo_context(tmp_path / "ws", FAST, **{**MODELS, **context})
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    config = {"configurable": {"thread_id": "model-calls"}}
    if mode == "invoke":
        return graph.invoke({"goal": GOAL}, config=config, context=ctx)
    state: dict = {}
    for kind, part in graph.stream(
        {"goal": GOAL}, config=config, context=ctx, stream_mode=["messages", "values"]
    ):
        if kind == "values":
            state = part
        elif chunks is not None:
            chunks.append(part[0])
    return state


def test_a_black_hole_endpoint_ends_the_run_with_a_reason_after_timeouts_and_retries(
    black_hole: BlackHole, tmp_path: Path
) -> None:
    started = time.monotonic()
    state = run(tmp_path, model_timeout_s=1.0)
    took = time.monotonic() - started

    assert state["status"] == "failed"
    assert "planner model 'openai:gpt-4o' failed" in state["reason"]
    assert "did not answer in time" in state["reason"], state["reason"]
    # One request per attempt: the RetryPolicy's, not the client's own retries on top.
    assert len(black_hole.accepted) == MODEL_NODE_ATTEMPTS
    # Three 1 s timeouts and two backoffs (1 s, 2 s, each with up to 1 s of jitter).
    assert took < 3 * 1.0 + 5.0 + 5.0, took


@pytest.mark.parametrize("fault", ["fail_first_429", "fail_first_503"])
def test_transient_planner_errors_are_retried_by_the_node_retry_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    with endpoint(monkeypatch, **{fault: 2}) as server:
        state = run(tmp_path)
        served = server.usage()
    assert_done(state, tmp_path)
    assert served["statuses"]["429" if "429" in fault else "503"] == 2
    assert state["usage"]["planner"]["calls"] == 1  # the failed attempts cost nothing


def test_a_streamed_run_counts_the_tokens_the_endpoint_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks: list = []
    with endpoint(monkeypatch) as server:
        state = run(tmp_path, mode="stream", chunks=chunks)
        served = server.usage()
    assert_done(state, tmp_path)
    assert any(isinstance(c, AIMessageChunk) for c in chunks), "the model calls did not stream"
    assert recorded_usage(state["usage"]) == served_usage(served)
    assert all(u["input_tokens"] > 0 for u in state["usage"].values())
