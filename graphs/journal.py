"""Durable step results, written the moment each step finishes.

LangGraph checkpoints at the end of a node, and the executor node runs several steps at once. So
each finished step is also written to the graph's store (SQLite or Postgres for the CLI, the
server's own store under `langgraph dev`), keyed by thread, run, step and attempt. A run killed with
steps in flight resumes by re-entering the executor node, which takes the journaled results
instead of running those steps again. Without a store, results are durable per node only.
"""

from __future__ import annotations

from typing import Any

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
        from langgraph.config import get_config  # in a node only: `planexec show` reads the
        # journal too, and langgraph.config costs it LangChain's tracers at startup

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
