"""`planexec runs`: find runs by status and age, a page at a time, with the total.

Records (one small store item per run) say when a run was created and, once it finished, its
final status: filtering and counting finished runs reads no checkpoint. Only unfinished runs
(queued, running, interrupted, paused) and the runs on the page shown read their state. An
unfinished run whose lock a process holds (a worker, a terminal) is `running`; otherwise its
checkpoint and the queue decide between `queued` (its job waits) and `interrupted`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from datetime import datetime
from typing import Any

from app.runs import runner
from app.runs.persistence import Persistence
from app.runs.worker import RunLocks, run_locks

UNFINISHED_STATUSES = ("queued", "running", "interrupted", runner.PAUSED)
STATUSES = (*runner.FINAL, *UNFINISHED_STATUSES)


def find_runs(
    persistence: Persistence,
    *,
    limit: int | None = 100,
    statuses: Collection[str] | None = None,
    since: float | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Runs newest first (at most `limit`; None for all) with one of `statuses`, created at or
    after `since` (epoch seconds); and how many runs match in total."""
    matching: list[tuple[str, dict[str, Any] | None]] = []
    with run_locks(persistence) as locks:
        for thread_id, record in reversed(runner.run_records(persistence)):
            if since is not None and record.get("created_at", 0) < since:
                continue
            state = None
            status = record.get("final_status")
            if status is None:
                state = runner.run_state(persistence, thread_id)
                status = state["status"] = _running_or(state["status"], locks, thread_id)
                if status in runner.FINAL:  # killed after its final checkpoint: note it now
                    runner.mark_finished(persistence, thread_id, status)
            if statuses and status not in statuses:
                continue
            matching.append((thread_id, state))
    page = matching if limit is None else matching[:limit]
    runs = [state or runner.run_state(persistence, thread_id) for thread_id, state in page]
    return runs, len(matching)


def current_state(persistence: Persistence, thread_id: str) -> dict[str, Any]:
    """A run's state as `runs` shows it: `running` while a process holds it (its checkpoint
    alone reads as interrupted or queued then)."""
    state = runner.run_state(persistence, thread_id)
    with run_locks(persistence) as locks:
        state["status"] = _running_or(state["status"], locks, thread_id)
    return state


def _running_or(status: str, locks: RunLocks, thread_id: str) -> str:
    """A queued or interrupted run whose lock a process holds is running right now."""
    if status not in ("queued", "interrupted"):
        return status
    return "running" if locks.held(thread_id) else status


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in "90s", "15m", "12h", "7d", "2w". The unit is required: `prune --older-than 7`
    read as 7 seconds removes nearly every finished run of someone who meant 7 days."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise ValueError(
            f"cannot read the duration {text!r}: write a number and a unit (s, m, h, d or w), "
            "e.g. 30m, 12h, 7d, 2w"
        )
    return float(match[1]) * _UNITS[match[2]]


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds from a duration back from now ("2h") or an ISO date ("2026-11-20")."""
    try:
        return (time.time() if now is None else now) - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"cannot read --since {text!r}: give a duration back from now (2h, 7d) or an ISO "
            "date (2026-11-20 or 2026-11-20T08:00)"
        ) from None


def check_statuses(statuses: Collection[str]) -> list[str]:
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown status {', '.join(unknown)}: use one of {', '.join(STATUSES)}")
    return list(statuses)
