"""Durable step results, written the moment each step finishes.

LangGraph checkpoints at the end of a node, and the executor node runs several steps at once. So
each finished step is also written to the graph's store (SQLite or Postgres for the CLI, the
server's own store under `langgraph dev`). A run killed with steps in flight resumes by re-entering
the executor node, which takes the journaled results instead of running those steps again.
Without a store, results are durable per node only.

What a journaled result may be reused for (its scope, computed in `journal_scope` and `step_key`
and nowhere else):

- the same node execution: the namespace holds the id of the LangGraph task that runs the node.
  LangGraph derives a task id from the checkpoint the node starts from (and the node's name), so
  a resume after a crash or `kill -9` re-enters the node with the same task id and finds its
  journal, while time travel (a run from an earlier `checkpoint_id`, which LangGraph starts with
  a new "fork" checkpoint) and `update_state` (a new "update" checkpoint) get a new task id and
  run every step afresh. The other branch keeps its own journal and state. One exception: a run
  a budget stopped keeps the scope it stopped in (`State.budget_scope`) for the executor visit
  that continues it, since a resume with a raised budget goes through `update_state` too; the
  steps stopped mid-way then replay their journaled turns (and send the same keys).
- the same step: the key holds the step's id and attempt and a digest of its whole definition
  and of the results of the steps it depends on, so a step whose description, tool, arguments or
  inputs changed is a different step.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from typing import Any

from langgraph.store.base import BaseStore, PutOp

from prompts.untrusted import storable

NO_SCOPE = "-"  # outside a graph task (a test calling a node function directly)


def journal_scope(config: dict[str, Any]) -> str:
    """The task id of the node execution `config` belongs to.

    A task's `checkpoint_ns` is "<node>:<task id>" (with parent namespaces before it, joined by
    "|", inside a subgraph); the task id is a hash of the checkpoint the node started from."""
    namespace = str(config.get("configurable", {}).get("checkpoint_ns") or "")
    return namespace.rpartition("|")[2].rpartition(":")[2] or NO_SCOPE


def planner_run_id(task_id: str) -> str:
    """The run id the planner node gives the run it starts as LangGraph task `task_id`: the
    same when the node runs again after a crash (the task id is derived from the checkpoint),
    so the steps it journaled are found on resume, and by `planexec show` before then."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"planexec-run:{task_id}").hex


def step_key(step: dict[str, Any], dependencies: dict[str, Any]) -> str:
    """`step id#attempt#digest of (definition, dependency results)`."""
    content = json.dumps([step, dependencies], sort_keys=True, default=str)
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    return f"{step['id']}#{step.get('attempt', 1)}#{digest}"


class StepJournal:
    """Finished steps of one node execution, by step key."""

    def __init__(
        self, store: BaseStore | None, thread_id: str | None, run_id: str, scope: str = NO_SCOPE
    ) -> None:
        # run_id is the planner's id for this run: a thread can hold several runs in turn (a
        # second goal sent to the same thread in Studio), and their step ids may repeat.
        self._store = store if thread_id else None
        self._namespace = ("planexec", "steps", str(thread_id), run_id or "-", scope)
        # One StepTurns per step key: the scheduler counts the execution and the executor replays
        # the turns from the same object, so the store is searched once per step, not twice.
        self._turns: dict[str, StepTurns] = {}

    @property
    def scope(self) -> str:
        """The node execution this journal belongs to (see the module docstring)."""
        return self._namespace[4]

    @classmethod
    def for_current_run(cls, store: BaseStore | None, run_id: str, scope: str = "") -> StepJournal:
        """The journal of the node execution running now (call it inside a graph node), or of
        `scope` when given: the execution a budget stopped, which this one continues."""
        # Imported here: `planexec show` reads the journal too, and langgraph.config would cost
        # it LangChain's tracers at startup.
        from langgraph.config import get_config

        config = get_config()
        thread_id = config.get("configurable", {}).get("thread_id")
        return cls(store, thread_id, run_id, scope or journal_scope(config))

    @classmethod
    def for_pending_task(
        cls,
        store: BaseStore | None,
        thread_id: str,
        run_id: str,
        tasks: Iterable[Any],
        budget_scope: str = "",
    ) -> StepJournal:
        """The journal a resume would read: that of the checkpoint's pending executor task
        (`tasks` as in `graph.get_state(...).tasks`), or of its pending planner task (steps
        start while the plan streams, in the planner's node execution), or the state's
        `budget_scope` when a budget stopped the run, or an empty one when none is there."""
        pending = {t.name: t.id for t in tasks}
        if not budget_scope and "executor" not in pending and "planner" in pending:
            # The planner has not written the state yet: its run id is its task's.
            task = pending["planner"]
            return cls(store, thread_id, planner_run_id(task), task)
        scope = budget_scope or pending.get("executor")
        return cls(store if scope else None, thread_id, run_id, scope or NO_SCOPE)

    def get(self, step: dict[str, Any], dependencies: dict[str, Any]) -> dict[str, Any] | None:
        """The journaled record ({"result", "usage"}) of this step, if it finished before."""
        if self._store is None:
            return None
        item = self._store.get(self._namespace, step_key(step, dependencies))
        return dict(item.value) if item else None

    def put(
        self,
        step: dict[str, Any],
        dependencies: dict[str, Any],
        result: dict,
        usage: dict,
        last_turn: tuple[int, dict, dict] | None = None,
    ) -> None:
        """Record the step's result; with `last_turn` (the final model reply, see
        executor.StepOutcome) that reply's turn record too, in the same transaction: one
        durable write per step instead of two."""
        if self._store is None:
            return
        key = step_key(step, dependencies)
        record = storable({"result": result, "usage": usage})
        ops = [PutOp(self._namespace, key, record, index=False)]
        if last_turn is not None:
            ops.append(self.turns(step, dependencies).model_reply_op(*last_turn))
        self._store.batch(ops)

    def turns(self, step: dict[str, Any], dependencies: dict[str, Any]) -> StepTurns:
        """The turn journal of this step with these inputs (graphs/executor.py replays it),
        scoped and keyed like its result, so a fork or an edited step starts afresh."""
        # ("planexec", "turns", ...) is not under the steps namespace: all() must not see it.
        key = step_key(step, dependencies)
        namespace = ("planexec", "turns", *self._namespace[2:], key)
        if self._store is None:  # nothing is kept: every execution starts from the first turn
            return StepTurns(None, namespace)
        if key not in self._turns:
            self._turns[key] = StepTurns(self._store, namespace)
        return self._turns[key]

    def planner_reply(self) -> dict[str, Any] | None:
        """The plan the planner of this node execution wrote (`put_planner_reply`), if any."""
        return self.planner_records()[1]

    def planner_records(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """What the planner of this node execution kept: its start (`put_planner_start`) and
        its plan (`put_planner_reply`), each None if not written."""
        if self._store is None:
            return None, None
        found = {i.key: dict(i.value) for i in self._store.search(self._planner_namespace)}
        return found.get("start"), found.get("plan")

    def put_planner_start(self, record: dict[str, Any]) -> None:
        """Keep when the planner started the run, what the plan cache decided and the run's
        context ({"started_at", "cache", "context"}), before any step can start in its node: a
        resume after a kill or a cancel keeps all three (a cached plan stored since would start
        the steps afresh; another caller's context would run them with other tools)."""
        if self._store is not None:
            self._store.put(self._planner_namespace, "start", storable(record), index=False)

    def put_planner_reply(self, record: dict[str, Any]) -> None:
        """Keep the planner's validated plan ({"plan", "steps", "usage", "attempts", "looked"}):
        a planner node that runs the first steps while the plan streams can be killed long
        after its model call, and on resume it must take this plan, not ask again. A model's
        second answer may word the steps differently, and a step worded differently is a new
        step (step_key): its side effects would happen twice."""
        if self._store is not None:
            self._store.put(self._planner_namespace, "plan", storable(record), index=False)

    def forget_result(self, step_id: str) -> list[str]:
        """Delete the journaled result of `step_id` in this node execution, keeping its turns:
        an execution that continues this one (`planexec resume` of a run a step failed) runs
        the step on from them. Returns the step keys whose result went."""
        if self._store is None:
            return []
        items = self._store.search(self._namespace, limit=10_000)
        keys = [
            i.key
            for i in items
            if tuple(i.namespace) == self._namespace and i.value["result"]["id"] == step_id
        ]
        for key in keys:
            self._store.delete(self._namespace, key)
        return keys

    def model_turns_of(self, key: str) -> int:
        """How many model replies the step of `key` has journaled."""
        return StepTurns(self._store, ("planexec", "turns", *self._namespace[2:], key)).model_turns

    @property
    def _planner_namespace(self) -> tuple[str, ...]:
        # Beside the steps' turns (pruned with them), never under the steps namespace.
        return ("planexec", "turns", *self._namespace[2:], "planner")

    def records(self) -> list[dict[str, Any]]:
        """Every record ({"result", "usage"}) of this node execution, whatever plan it was for."""
        if self._store is None:
            return []
        items = self._store.search(self._namespace, limit=10_000)
        # search matches by prefix
        return [dict(i.value) for i in items if tuple(i.namespace) == self._namespace]

    def all(self) -> dict[str, dict[str, Any]]:
        """Every journaled result of this node execution, latest attempt per step (for
        `planexec show`)."""
        latest: dict[str, dict[str, Any]] = {}
        for record in self.records():
            result = record["result"]
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

    @property
    def model_turns(self) -> int:
        """How many model replies are journaled (turns 0..n-1)."""
        return sum(key.startswith("m") for key in self.records)

    def model_reply(self, turn: int) -> dict[str, Any] | None:
        return self.records.get(f"m{turn}")

    def put_model_reply(self, turn: int, message: dict, usage: dict) -> None:
        self._put(f"m{turn}", {"message": message, "usage": usage})

    def model_reply_op(self, turn: int, message: dict, usage: dict) -> PutOp:
        """The write of a model reply, for a caller's batch (StepJournal.put)."""
        value = storable({"message": message, "usage": usage})
        self.records[f"m{turn}"] = value
        return PutOp(self._namespace, f"m{turn}", value, index=False)

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

    def calls_answered(self) -> int:
        """Tool calls of this attempt whose answer is journaled: a replay gives them back."""
        return sum(k.startswith("t") and v.get("state") == "done" for k, v in self.records.items())

    def calls_made(self) -> int:
        """Tool invocations really made for this attempt, repeats after crashes included."""
        return sum(int(v.get("starts", 0)) for k, v in self.records.items() if k.startswith("t"))

    def _put(self, key: str, value: dict[str, Any]) -> None:
        value = storable(value)
        self.records[key] = value
        if self._store is not None:
            self._store.put(self._namespace, key, value, index=False)


def run_records(store: BaseStore | None, thread_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every journaled record ({"result", "usage"}) of a run, across all its node executions
    and attempts (for the run report, which draws each attempt)."""
    if store is None:
        return []
    prefix = ("planexec", "steps", str(thread_id), run_id or "-")
    return [dict(item.value) for item in store.search(prefix, limit=100_000)]
