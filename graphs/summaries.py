"""A one-line `summary` of what each node did, written into the state with the node's update.

LangGraph's checkpoint metadata says which superstep wrote a checkpoint, not what happened in it,
so a thread's history (`get_state_history`, Studio's time travel) would be a list of step numbers
and `next` nodes. Each node's update also sets `State.summary` ("planner: planned 4 steps: s1, s2,
s3, s4"), so a person choosing a checkpoint to fork from or edit can read what it holds. The nodes
themselves do not know about it: `summarized(name, node)` wraps them in the graph builder.

Being the one place every node's update passes, the wrapper also makes the update storable
(`prompts.untrusted.storable`): no NUL or lone surrogate from a model, a tool or an error text
reaches the checkpoint, where one would fail every write of the run.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

from langgraph.types import Command

from prompts.untrusted import storable

MAX_CHARS = 300


def summarized(name: str, node: Callable[..., Any]) -> Callable[..., Any]:
    """`node` (sync or async, taking state and runtime) with a summary added to its update."""
    if inspect.iscoroutinefunction(node):

        @functools.wraps(node)
        async def async_node(state: Any, runtime: Any) -> Any:
            return _with_summary(name, await node(state, runtime))

        return async_node

    @functools.wraps(node)
    def sync_node(state: Any, runtime: Any) -> Any:
        return _with_summary(name, node(state, runtime))

    return sync_node


def _with_summary(name: str, out: Any) -> Any:
    # Every node's update passes here: text that no checkpoint can hold (a NUL, a lone
    # surrogate, from a model, a tool or an error) is made storable once, for all of them.
    if isinstance(out, Command):
        update = out.update if isinstance(out.update, dict) else None
        if update is None:
            return out
        update = storable(update)
        return dataclasses.replace(out, update={**update, "summary": describe(name, update)})
    if isinstance(out, dict):
        out = storable(out)
        return {**out, "summary": describe(name, out)}
    return out


def describe(node: str, update: dict[str, Any]) -> str:
    """What `update`, written by `node`, did to the run, in one line."""
    text = _describe(node, update)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def _describe(node: str, update: dict[str, Any]) -> str:
    status, reason = update.get("status"), update.get("reason")
    if status in ("failed", "rejected", "replan_limit") and reason:
        return f"{node}: run {status}: {reason}"
    if node == "planner":
        ids = [s["id"] for s in update.get("plan", [])]
        return f"planner: planned {len(ids)} steps: {', '.join(ids)}"
    if node == "executor":
        parts = [_step_line(r) for r in update.get("results", {}).values() if isinstance(r, dict)]
        cut = " (stopped on request)" if update.get("batch_cut") else ""
        return f"executor: {'; '.join(parts) or 'no step ran'}{cut}"
    for entry in update.get("history", [])[-1:]:
        if isinstance(entry, dict) and entry.get("action"):
            steps = [s.get("id") for s in entry.get("steps", []) if isinstance(s, dict)]
            new = f" ({len(steps)} new steps: {', '.join(steps)})" if steps else ""
            why = f": {entry['reason']}" if entry.get("reason") else ""
            return f"{node}: {entry['action']}{new}{why}"
    if status == "done":
        return f"{node}: run done"
    return f"{node}: updated {', '.join(sorted(update)) or 'nothing'}"


def _step_line(result: dict[str, Any]) -> str:
    line = f"{result.get('id')} {result.get('status')}"
    if result.get("surprise"):
        line += f" (surprise: {result['surprise']})"
    elif result.get("error"):
        line += f" ({result['error']})"
    return line
