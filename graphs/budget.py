"""Budgets per run: total tokens, cost in USD, wall-clock time and total tool calls.

One `Spend` per visit to the executor node starts from what the run's state already holds (the
usage and tool calls of finished steps) and adds every model reply and tool call the moment it
happens, from all parallel steps at once. The scheduler asks `exceeded()` before it starts a step,
and each step asks it before each model turn and tool call. A budget hit therefore starts no new
work and loses nothing: finished steps are journaled, and the turns of a step stopped mid-way are
in its turn journal, so a resume with a raised budget continues exactly where the run stopped.
The per-step deadline is not a run budget: a step past it fails, and the replanner decides.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from app.usage import merge_usage, total_usage
from graphs.state import DONE

# Context field -> the `planexec run/resume` option that sets it.
BUDGET_OPTIONS = {
    "max_total_tokens": "--max-tokens",
    "max_cost_usd": "--max-cost",
    "max_wall_seconds": "--max-seconds",
    "max_total_tool_calls": "--max-tool-calls",
}
BUDGET_FIELDS = tuple(BUDGET_OPTIONS)


def tool_calls_of(results: dict[str, dict[str, Any]]) -> int:
    """Tool calls made by the steps that have a result (latest attempt each)."""
    return sum(_calls_of(r) for r in results.values())


def tool_calls_spent(state: dict[str, Any]) -> int:
    """Tool calls the run has made: its steps' (latest attempt each), and those of the steps
    that ran while a plan streamed but were discarded with it (graphs/planner.py `_discard`):
    their calls were made, so they count against the budget like any other."""
    discarded = [
        r
        for entry in state.get("history") or []
        if isinstance(entry, dict) and entry.get("action") == "discarded"
        for r in entry.get("results") or []
        if isinstance(r, dict)
    ]
    return tool_calls_of(state.get("results") or {}) + sum(map(_calls_of, discarded))


def journaled_tool_calls(journal: Any, state: dict[str, Any]) -> int:
    """Tool calls made by steps that have no result in the state yet: a step a budget stopped
    mid-way (its turn journal holds its calls) or one killed after its result was journaled.
    Counted only as each step replayed them, a step beside them could make a fresh call first:
    a run stopped at a budget of 4 calls, continued, made 5, then 6."""
    results = state.get("results") or {}
    calls = 0
    for step in state.get("plan") or []:
        settled = results.get(step["id"])
        if settled is not None and settled.get("attempts", 1) >= step.get("attempt", 1):
            continue
        needed = step.get("depends_on") or []
        if not all((results.get(d) or {}).get("status") == DONE for d in needed):
            continue  # not ready: nothing of it can have run with these inputs
        calls += journal.turns(step, {d: results[d] for d in needed}).calls_answered()
    return calls


def _calls_of(result: dict[str, Any]) -> int:
    # Never below 0: an edited state must not buy calls back.
    return max(0, int(_finite(result.get("tool_calls_made", len(result.get("tool_calls", []))))))


class Spend:
    """What a run has spent so far, shared by the steps running at once (thread-safe)."""

    def __init__(self, ctx: Any, state: dict[str, Any]) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self.usage: dict[str, dict[str, Any]] = dict(state.get("usage") or {})
        self.tool_calls = tool_calls_spent(state)
        # Working time: the waits for a person or a resume do not count (graphs/run_clock.py).
        # A state edit could make either number nan, which no `>=` check would ever reach.
        started_at = _finite(state.get("started_at")) or time.time()
        self.started_at = started_at + max(0.0, _finite(state.get("paused_seconds")))
        self._prepaid = 0  # journaled calls counted up front, not yet replayed

    def prepay(self, calls: int) -> None:
        """Count tool calls the turn journal holds for steps with no result in the state (see
        `journaled_tool_calls`) before any step starts; their replays then add nothing."""
        with self._lock:
            self.tool_calls += calls
            self._prepaid += calls

    def add_replayed_call(self) -> None:
        """A journaled call replayed: counted by `prepay` if it was, else now."""
        with self._lock:
            if self._prepaid > 0:
                self._prepaid -= 1
            else:
                self.tool_calls += 1

    def add_model(self, usage: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self.usage = merge_usage(self.usage, usage)

    def add_tool_call(self) -> None:
        with self._lock:
            self.tool_calls += 1

    def spent(self) -> dict[str, Any]:
        with self._lock:
            # Each role's figures as counted, never below 0: an edited state must not buy
            # tokens or dollars back for the other roles.
            total = total_usage(
                {
                    role: {k: max(0, v) if isinstance(v, int | float) else v for k, v in u.items()}
                    for role, u in self.usage.items()
                    if isinstance(u, dict)
                }
            )
            return {
                "total_tokens": total["input_tokens"] + total["output_tokens"],
                "cost_usd": total["cost_usd"],
                "wall_seconds": round(time.time() - self.started_at, 3),
                "tool_calls": self.tool_calls,
            }

    def exceeded(self) -> dict[str, Any] | None:
        """The first budget reached, as {"budget", "limit", "spent"}, or None."""
        limits = {name: getattr(self._ctx, name, 0) or 0 for name in BUDGET_FIELDS}
        if not any(limits.values()):
            return None
        spent = self.spent()
        measured = {
            "max_total_tokens": spent["total_tokens"],
            "max_cost_usd": spent["cost_usd"],
            "max_wall_seconds": spent["wall_seconds"],
            "max_total_tool_calls": spent["tool_calls"],
        }
        for name, limit in limits.items():
            value = measured[name]
            # An unknown cost (None) cannot be kept under a budget: models with no known price
            # are refused up front (app/pricing.py), so one here is a usage record edited or
            # gone wrong, and the budget counts as reached rather than switched off.
            if limit and (value is None or value >= limit):
                return {"budget": name, "limit": limit, "spent": spent}
        return None


def _finite(value: Any) -> float:
    """`value` as a finite number, 0.0 for anything else (None, nan, inf, not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def describe(hit: dict[str, Any]) -> str:
    """A budget hit as a sentence for `reason`."""
    spent = hit["spent"]
    cost = spent["cost_usd"]
    if hit["budget"] == "max_cost_usd" and cost is None:  # no raised budget would help
        return (
            f"budget max_cost_usd={hit['limit']} cannot be kept: a call's cost is unknown (its "
            "model has no known price). Resume without a cost budget, or with a priced model."
        )
    return (
        f"budget {hit['budget']}={hit['limit']} reached; spent {spent['total_tokens']} tokens, "
        f"{'unknown' if cost is None else f'${cost:.4f}'} USD, {spent['tool_calls']} tool "
        f"calls, {spent['wall_seconds']:.1f} s. Raise it on resume, e.g. "
        f"`planexec resume ID {BUDGET_OPTIONS[hit['budget']]} ...`"
    )
