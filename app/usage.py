"""Token and cost accounting per role, kept in the run's state.

`usage` in the state maps a role (planner, executor, replanner) to its totals. Parallel steps add
to it at once, so it merges through `merge_usage`, a reducer that adds rather than overwrites.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage

from app.pricing import cost_usd

ROLES = ("planner", "executor", "replanner")
# A reducer update holding this key replaces the old value instead of adding to it: a new run on
# a thread that held one before starts from zero (graphs/state.py uses it too).
RESET_KEY = "__reset__"


def usage_of_call(role: str, message: AIMessage, model: str) -> dict[str, dict[str, Any]]:
    """One model call as a usage update for `role`, priced by the model that answered."""
    meta = message.usage_metadata or {}
    answered_by = (message.response_metadata or {}).get("model_name") or model
    input_tokens = int(meta.get("input_tokens", 0))
    output_tokens = int(meta.get("output_tokens", 0))
    return {
        role: {
            "calls": 1,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": cost_usd(answered_by, input_tokens, output_tokens),
            "model": answered_by,
        }
    }


def _add_cost(a: float | None, b: float | None) -> float | None:
    # An unknown price anywhere makes the sum unknown: None, never a partial figure.
    if a is None or b is None:
        return None
    return a + b


def merge_usage(
    left: dict[str, dict[str, Any]] | None, right: dict[str, dict[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    """Reducer: add `right`'s per-role totals to `left`'s. A `right` holding the key
    "__reset__" replaces `left` instead (a new run on a thread starts from zero)."""
    if right and RESET_KEY in right:
        left, right = {}, {k: v for k, v in right.items() if k != RESET_KEY}
    merged = {role: dict(totals) for role, totals in (left or {}).items()}
    for role, add in (right or {}).items():
        if role not in merged:
            merged[role] = dict(add)
            continue
        cur = merged[role]
        for key in ("calls", "input_tokens", "output_tokens"):
            cur[key] = cur.get(key, 0) + add.get(key, 0)
        cur["cost_usd"] = _add_cost(cur.get("cost_usd"), add.get("cost_usd"))
        if add.get("model") and add.get("model") != cur.get("model"):
            models = set(filter(None, str(cur.get("model", "")).split(", "))) | {add["model"]}
            cur["model"] = ", ".join(sorted(models))
    return merged


def total_usage(usage: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """All roles summed: calls, tokens, and cost (None if any role's price is unknown)."""
    total: dict[str, Any] = {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for totals in (usage or {}).values():
        for key in ("calls", "input_tokens", "output_tokens"):
            total[key] += totals.get(key, 0)
        total["cost_usd"] = _add_cost(total["cost_usd"], totals.get("cost_usd"))
    return total
