"""The run's working time, for the wall-clock budget: time since the planner started the run,
less the time it waited on a person or on `planexec resume`.

A run paused for plan approval, or stopped by a budget or a failure until someone resumes it, is
not working: counting that wait would end it `budget_exceeded` the moment a person who took
longer than `max_wall_seconds` to approve said yes, with no step run. `State.paused_seconds`
holds the waits, and `Spend` (graphs/budget.py) counts from `started_at` moved on by them. A
process killed mid-run is not a wait anyone chose: its downtime counts.

How long a wait was comes from the checkpoint it began at. Inside a node that LangGraph ran
again on resume (the approval node), that checkpoint's id is in the task's config, and
LangGraph's checkpoint ids are UUIDv6, which carry the time they were made.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

# 100-ns intervals from the UUID epoch (1582-10-15) to the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


def checkpoint_time(checkpoint_id: str) -> float | None:
    """When a checkpoint with this id was made (Unix time), or None when the id is not a
    UUIDv6 (a checkpointer that names checkpoints otherwise)."""
    try:
        value = uuid.UUID(str(checkpoint_id))
    except ValueError:
        return None
    if value.version != 6:
        return None
    # v6: the 60-bit timestamp's top 48 bits, 4 version bits, then its low 12 bits.
    ticks = ((value.int >> 80) << 12) | ((value.int >> 64) & 0xFFF)
    return (ticks - _UUID_EPOCH_OFFSET) / 1e7


def waited_in_node(config: dict[str, Any]) -> float:
    """Seconds since the checkpoint the running node started from (0 if unknown): in a node
    resumed after an `interrupt`, the time its question waited for an answer."""
    # One checkpoint per graph level (the run's graph inside a user's graph has two): the
    # latest made is this node's own graph's, the one its question waited at.
    ids = (config.get("configurable", {}).get("checkpoint_map") or {}).values()
    made = [t for t in map(checkpoint_time, ids) if t is not None]
    return max(0.0, time.time() - max(made)) if made else 0.0


def waited_since(created_at: str | None) -> float:
    """Seconds since a StateSnapshot's `created_at` (ISO 8601; 0 if absent or unreadable)."""
    try:
        made = datetime.fromisoformat(str(created_at)).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, time.time() - made)


def paused_after(state: dict[str, Any], waited: float) -> float:
    """`State.paused_seconds` with one more wait."""
    return float(state.get("paused_seconds") or 0.0) + waited
