"""Durable step results, written the moment each step finishes.

LangGraph checkpoints at the end of a node, and the executor node runs several steps at once. So
each finished step is also written to the graph's store (SQLite or Postgres for the CLI, the
server's own store under `langgraph dev`), keyed by thread, run, step and attempt. A run killed with
steps in flight resumes by re-entering the executor node, which takes the journaled results
instead of running those steps again. Without a store, results are durable per node only.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config
from langgraph.store.base import BaseStore


class StepJournal:
    """Finished steps of one thread, by step id and attempt."""

    def __init__(self, store: BaseStore | None, thread_id: str | None, run_id: str) -> None:
        # run_id is the planner's id for this run: a thread can hold several runs in turn (a
        # second goal sent to the same thread in Studio), and their step ids may repeat.
        self._store = store if thread_id else None
        self._namespace = ("planexec", "steps", str(thread_id), run_id or "-")

    @classmethod
    def for_current_run(cls, store: BaseStore | None, run_id: str) -> StepJournal:
        thread_id = get_config().get("configurable", {}).get("thread_id")
        return cls(store, thread_id, run_id)

    @staticmethod
    def _key(step_id: str, attempt: int) -> str:
        return f"{step_id}#{attempt}"

    def get(self, step_id: str, attempt: int) -> dict[str, Any] | None:
        """The journaled record ({"result", "usage"}) of this attempt, if it finished before."""
        if self._store is None:
            return None
        item = self._store.get(self._namespace, self._key(step_id, attempt))
        return dict(item.value) if item else None

    def put(self, step_id: str, attempt: int, result: dict, usage: dict) -> None:
        if self._store is not None:
            self._store.put(
                self._namespace,
                self._key(step_id, attempt),
                {"result": result, "usage": usage},
                index=False,
            )

    def turns(self, step_id: str, attempt: int) -> StepTurns:
        """The turn journal of this attempt of this step (graphs/executor.py replays it)."""
        # ("planexec", "turns", ...) is not under the steps namespace: all() must not see it.
        namespace = ("planexec", "turns", *self._namespace[2:], self._key(step_id, attempt))
        return StepTurns(self._store, namespace)

    def all(self) -> dict[str, dict[str, Any]]:
        """Every journaled result of the thread, latest attempt per step (for `planexec show`)."""
        if self._store is None:
            return {}
        latest: dict[str, dict[str, Any]] = {}
        for item in self._store.search(self._namespace, limit=10_000):
            result = item.value["result"]
            current = latest.get(result["id"])
            if current is None or current["attempts"] < result["attempts"]:
                latest[result["id"]] = result
        return latest


class StepTurns:
    """The turns of one attempt of one step: each model reply and each tool call, journaled the
    moment it exists, so a step resumed after a crash replays them instead of paying again.

    Records, by key (`turn` counts model replies from 0, `index` counts tool calls from 0):
      "exec"       {"executions": n}: times this attempt was started (killed ones too)
      "m{turn}"    {"message": <AIMessage as dict>, "usage": {...}}
      "t{index}"   {"state": "started", "starts": n} before the call, then
                   {"state": "done", "starts": n, "message": <ToolMessage as dict>,
                    "error": "" or why the tool raised}
    A "started" record without "done" is the one call whose outcome is unknown after a crash.
    They live in their own namespace beside the step journal, so `StepJournal.all()` never sees
    them. Without a store (or a thread) nothing is kept and every step runs from its first turn.
    """

    def __init__(self, store: BaseStore | None, namespace: tuple[str, ...]) -> None:
        self._store = store
        self._namespace = namespace
        self.records: dict[str, dict[str, Any]] = {}
        if store is not None:
            for item in store.search(namespace, limit=10_000):
                self.records[item.key] = dict(item.value)

    @property
    def executions(self) -> int:
        return int(self.records.get("exec", {}).get("executions", 0))

    def begin(self) -> int:
        """Count one more execution of this attempt; return its number (1 = first)."""
        n = self.executions + 1
        self._put("exec", {"executions": n})
        return n

    def model_reply(self, turn: int) -> dict[str, Any] | None:
        return self.records.get(f"m{turn}")

    def put_model_reply(self, turn: int, message: dict, usage: dict) -> None:
        self._put(f"m{turn}", {"message": message, "usage": usage})

    def tool_call(self, index: int) -> dict[str, Any] | None:
        return self.records.get(f"t{index}")

    def tool_started(self, index: int) -> None:
        starts = int(self.records.get(f"t{index}", {}).get("starts", 0)) + 1
        self._put(f"t{index}", {"state": "started", "starts": starts})

    def tool_done(self, index: int, message: dict, error: str = "") -> None:
        starts = int(self.records.get(f"t{index}", {}).get("starts", 1))
        self._put(
            f"t{index}", {"state": "done", "starts": starts, "message": message, "error": error}
        )

    def calls_made(self) -> int:
        """Tool invocations really made for this attempt, repeats after crashes included."""
        return sum(int(v.get("starts", 0)) for k, v in self.records.items() if k.startswith("t"))

    def _put(self, key: str, value: dict[str, Any]) -> None:
        self.records[key] = value
        if self._store is not None:
            self._store.put(self._namespace, key, value, index=False)
