"""Token and cost accounting per role, kept in the run's state.

`usage` in the state maps a role (planner, executor, replanner) to its totals. Parallel steps add
to it at once, so it merges through `merge_usage`, a reducer that adds rather than overwrites.

A role's totals: calls, input_tokens, cached_input_tokens (the part of input_tokens the provider
read from its prompt cache, `usage_metadata["input_token_details"]["cache_read"]`),
output_tokens, cost_usd (None when a price is unknown) and model.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage

from app.pricing import cost_usd

ROLES = ("planner", "executor", "replanner")
TOKEN_KEYS = ("calls", "input_tokens", "cached_input_tokens", "output_tokens")
_CACHE_READ_KEYS = ("cache_read", "priority_cache_read", "flex_cache_read")
# A reducer update holding this key replaces the old value instead of adding to it: a new run on
# a thread that held one before starts from zero (graphs/state.py uses it too).
RESET_KEY = "__reset__"


def usage_of_call(role: str, message: AIMessage, model: str) -> dict[str, dict[str, Any]]:
    """One model call as a usage update for `role`, priced by the model that answered (see
    `_priced_by`)."""
    meta = message.usage_metadata or {}
    answered_by = (message.response_metadata or {}).get("model_name") or model
    input_tokens = int(meta.get("input_tokens", 0))
    cached = cached_input_tokens(meta)
    output_tokens = int(meta.get("output_tokens", 0))
    return {
        role: {
            "calls": 1,
            "input_tokens": input_tokens,
            "cached_input_tokens": cached,
            "output_tokens": output_tokens,
            "cost_usd": call_cost(
                _priced_by(answered_by, model), input_tokens, cached, output_tokens
            ),
            "model": answered_by,
        }
    }


def _priced_by(answered_by: str, model: str) -> str:
    """The name a call is priced as: the model that answered, as its reply names it, with the
    configured model's provider when the reply gives none ('llama-3.3-70b-versatile' from
    'groq:...'); else, when the price list knows neither spelling (a proxy's 'openai/gpt-4o-mini'),
    the configured model, whose price was checked before the run. An unknown price would leave
    a cost budget nothing to count."""
    from app.pricing import price_known

    provider, sep, _ = model.partition(":")
    candidates = [answered_by]
    if sep and ":" not in answered_by:
        candidates.insert(0, f"{provider}:{answered_by}")
    return next((c for c in [*candidates, model] if price_known(c)), answered_by)


def cached_input_tokens(usage_metadata: dict[str, Any]) -> int:
    """Input tokens read from the provider's prompt cache. LangChain integrations report them as
    `input_token_details.cache_read` (langchain-openai as `priority_cache_read` or
    `flex_cache_read` on those service tiers); never more than the input tokens."""
    details = usage_metadata.get("input_token_details") or {}
    cached = sum(int(details.get(k) or 0) for k in _CACHE_READ_KEYS)
    return max(0, min(cached, int(usage_metadata.get("input_tokens", 0))))


def call_cost(
    model: str, input_tokens: int, cached_input_tokens: int, output_tokens: int
) -> float | None:
    """What one call cost, or None when the model's price is unknown: the one place a call is
    priced. `input_tokens` includes the `cached_input_tokens`, priced at the cached rate."""
    return cost_usd(model, input_tokens, output_tokens, cached_input_tokens)


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
        for key in TOKEN_KEYS:
            cur[key] = cur.get(key, 0) + add.get(key, 0)
        cur["cost_usd"] = _add_cost(cur.get("cost_usd"), add.get("cost_usd"))
        if add.get("model") and add.get("model") != cur.get("model"):
            models = set(filter(None, str(cur.get("model", "")).split(", "))) | {add["model"]}
            cur["model"] = ", ".join(sorted(models))
    return merged


def total_usage(usage: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """All roles summed: calls, tokens, and cost (None if any role's price is unknown)."""
    total: dict[str, Any] = {key: 0 for key in TOKEN_KEYS} | {"cost_usd": 0.0}
    for totals in (usage or {}).values():
        for key in TOKEN_KEYS:
            total[key] += totals.get(key, 0)
        total["cost_usd"] = _add_cost(total["cost_usd"], totals.get("cost_usd"))
    return total


def cache_hit_rate(totals: dict[str, Any]) -> float | None:
    """The share of input tokens read from the prompt cache (None when there was no input)."""
    input_tokens = totals.get("input_tokens", 0)
    return totals.get("cached_input_tokens", 0) / input_tokens if input_tokens else None


def hit_rate_text(totals: dict[str, Any]) -> str:
    """The cache hit rate for a table cell: "37%", or "-" when there was no input."""
    rate = cache_hit_rate(totals)
    return "-" if rate is None else f"{rate:.0%}"


def with_cache_hit_rates(usage: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """`usage` with each role's `cache_hit_rate` added, for reports (the state keeps
    only the sums: a rate is derived, and summing rates would be wrong)."""
    out = {role: dict(totals) for role, totals in (usage or {}).items()}
    for totals in out.values():
        totals["cache_hit_rate"] = cache_hit_rate(totals)
    return out
