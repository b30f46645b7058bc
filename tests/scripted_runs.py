"""Run the real graph in-process on a scripted scenario and keep what a test needs to look at:
the final state, the custom-stream events, and every prompt the models received."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.context import Context
from graphs.plan_execute import build_graph


class PromptLog(BaseCallbackHandler):
    """Records the messages every model call receives, with its planexec role and step."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized, messages, *, run_id, metadata=None, **kwargs):
        meta = metadata or {}
        self.calls.append(
            {
                "role": meta.get("planexec_role"),
                "step": meta.get("planexec_step"),
                "attempt": meta.get("planexec_attempt"),
                "messages": messages[0],
            }
        )

    def texts(self, role: str) -> list[str]:
        """Each call's whole prompt for `role`, as one string."""
        return [
            "\n".join(str(m.content) for m in c["messages"])
            for c in self.calls
            if c["role"] == role
        ]

    def task(self, step_id: str) -> str:
        """The task message of `step_id`'s first executor call."""
        call = next(c for c in self.calls if c["role"] == "executor" and c["step"] == step_id)
        return next(str(m.content) for m in call["messages"] if m.type == "human")


class Run:
    """A finished run: final state, custom-stream events, and the prompts the models saw."""

    def __init__(
        self,
        state: dict[str, Any],
        events: list[dict[str, Any]],
        log: PromptLog,
        store: InMemoryStore | None = None,
    ):
        self.state, self.events, self.log = state, events, log
        self.results = state.get("results", {})
        self.store = store  # the run's store: its step journal

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def started(self) -> list[str]:
        return [e["step_id"] for e in self.of_kind("step_started")]

    def calls(self, role: str) -> int:
        return self.state.get("usage", {}).get(role, {}).get("calls", 0)

    def index(self, kind: str, step_id: str | None = None) -> int:
        """Position of the first `kind` event (for `step_id`) in the stream."""
        return next(
            i
            for i, e in enumerate(self.events)
            if e["event"] == kind and (step_id is None or e.get("step_id") == step_id)
        )

    def step_events(self) -> list[tuple[str, str]]:
        return [
            (e["event"], e["step_id"])
            for e in self.events
            if e["event"] in ("step_started", "step_finished")
        ]

    def overlap(self, a: str, b: str) -> bool:
        ra, rb = self.results[a], self.results[b]
        return ra["started_at"] < rb["finished_at"] and rb["started_at"] < ra["finished_at"]


def write_scenario(tmp_path: Path, script: dict[str, Any]) -> Path:
    path = tmp_path / f"{script['name']}.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return path


def run_scenario(
    tmp_path: Path,
    scenario: Path,
    *,
    goal: str = "Test goal.",
    thread_id: str = "t1",
    **context: Any,
) -> Run:
    """Play `scenario` with all three roles through the compiled graph, to the end. The
    scripted models' prompt cache is per thread: a test that counts cached tokens passes a
    `thread_id` of its own."""
    spec = f"scripted:{scenario}"
    context.setdefault("tools", json.loads(scenario.read_text())["tools"])
    ctx = Context.every_role(spec, workspace=str(tmp_path / "ws"), **context)
    store = InMemoryStore()
    graph = build_graph(checkpointer=InMemorySaver(), store=store)
    log = PromptLog()
    config = {"configurable": {"thread_id": thread_id}, "callbacks": [log]}
    events = list(
        graph.stream(
            {"goal": goal}, config=config, context=ctx, stream_mode="custom", durability="sync"
        )
    )
    return Run(dict(graph.get_state(config).values), events, log, store)


def replanner_reason(step_id: str, kind: str, text: str) -> str:
    """How the replanner's prompt opens a step's failure or surprise: `text` starts the step's
    untrusted data block (kind: 'failed' or 'reported a surprise')."""
    label = "error" if kind == "failed" else "surprise"
    opening = f'<data source="{label} of step {step_id}" trust="untrusted">'
    return f"step {step_id} {kind}:\n{opening}\n{text}"
