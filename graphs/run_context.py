"""The context a node or routing function of a run uses.

The planner records the run's Context in the state (`State.context`) when a run starts; every later
node and routing function reads it from there. So a run resumed over the server without a context
(an approval answered from another client, a crashed run continued by a worker) keeps its models
and caps, and a routing function works where LangGraph gives no runtime at all (`update_state`,
`as_node`, Studio's state edits). To change a run's configuration mid-run, edit `context` in its
state (`update_state`); a new goal on the thread records a new context.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from app.context import Context, resolve_context, restore_context


def run_context(state: dict[str, Any], runtime: Runtime[Context] | None = None) -> Context:
    """The run's recorded Context, else the caller's (`runtime.context`), else the defaults."""
    recorded = state.get("context")
    if recorded:
        return restore_context(recorded)
    return resolve_context(runtime.context if runtime is not None else None)
