"""Retrying the planner and replanner nodes when their model call fails for a passing reason.

The nodes turn every model error into a clean end of the run with a reason. A transient one (429,
5xx, a timeout, a dropped connection: `app.models.is_transient`) is raised instead while attempts
remain, so LangGraph's RetryPolicy runs the node again after a backoff; the last attempt ends the
run cleanly like any other error. The node learns which attempt it is from the runtime.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import RetryPolicy

from app.models import is_transient

MODEL_NODE_ATTEMPTS = 3

MODEL_NODE_RETRY = RetryPolicy(
    max_attempts=MODEL_NODE_ATTEMPTS,
    initial_interval=1.0,
    backoff_factor=2.0,
    max_interval=10.0,
    jitter=True,
    retry_on=is_transient,
)


def retry_node(exc: BaseException, runtime: Any) -> bool:
    """Whether the node should raise `exc` for the RetryPolicy rather than end the run."""
    info = getattr(runtime, "execution_info", None)
    attempt = getattr(info, "node_attempt", MODEL_NODE_ATTEMPTS)
    return attempt < MODEL_NODE_ATTEMPTS and is_transient(exc)
