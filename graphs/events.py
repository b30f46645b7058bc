"""Progress events a run emits on LangGraph's `custom` stream (documented in docs/events.md).

Every event is a dict with `event` (its kind) and `at` (Unix time); the other fields depend on
the kind. The CLI's live view is driven by these, and SDK clients receive them with
`stream_mode="custom"`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

PLAN = "plan"
PLANNER_LOOKUP = "planner_lookup"
STEP_STARTED = "step_started"
STEP_FINISHED = "step_finished"
STEP_DISCARDED = "step_discarded"
STEP_RESTARTED = "step_restarted"
BUDGET_EXCEEDED = "budget_exceeded"
REPLANNED = "replanned"
PLAN_EDITED = "plan_edited"
REVIEWED = "reviewed"
PAUSED = "paused"
FINISHED = "finished"
PLAN_CACHE = "plan_cache"

Writer = Callable[[Any], None]


def emit(writer: Writer | None, event: str, **fields: Any) -> None:
    """Send one event; a run that nobody streams drops it."""
    if writer is not None:
        writer({"event": event, "at": time.time(), **fields})
