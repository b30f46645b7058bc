"""One price table for every cost figure planexec reports.

Prices are USD per million tokens (input, output), list prices for standard (non-batch,
non-cached) API use, from OpenAI's public API pricing page as they stood in mid-June 2025 (o3
after its 2025-06-10 price cut). Not re-checked since: update the table and the date together. A
model that is not here has cost None, never 0: an unknown price must not look free.
"""

from __future__ import annotations

PRICES_AS_OF = "2025-06-15"
PRICES_SOURCE = "OpenAI API pricing page (standard tier, per 1M tokens)"

# model name -> (input USD per 1M tokens, output USD per 1M tokens)
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
}


def price_key(model: str) -> str:
    """Table key for 'openai:gpt-4o', 'gpt-4o' or a dated snapshot like 'gpt-4o-2024-08-06'."""
    name = model.split(":", 1)[1] if ":" in model else model
    if name in PRICES_PER_MTOK:
        return name
    # Dated snapshots share their family's price; try the longest family name that prefixes it.
    for family in sorted(PRICES_PER_MTOK, key=len, reverse=True):
        if name.startswith(family + "-20"):
            return family
    return name


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """What a call cost, or None when the model's price is unknown."""
    price = PRICES_PER_MTOK.get(price_key(model))
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
