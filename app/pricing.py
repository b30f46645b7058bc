"""One price source for every cost figure planexec reports: pydantic's `genai-prices` package.

genai-prices is a maintained price database (every major provider, dated price changes, model
name variants such as dated snapshots) shipped as data inside the package, so pricing needs no
network. A model it does not know has cost None, never 0: an unknown price must not look free.
Scripted models are priced as the model each role stands for (the scenario's `stands_for`); the
scripted chat model reports that name as the reply's `model_name`, which is what gets priced.

genai-prices takes ~190 ms to import, so it is imported on the first price asked for.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version
from typing import Any

PRICES_AS_OF = f"genai-prices {version('genai-prices')}"
PRICES_SOURCE = "pydantic genai-prices (bundled price data)"

# LangChain provider names (init_chat_model's) -> genai-prices provider ids, where they differ.
_PROVIDERS = {
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "anthropic",
    "mistralai": "mistral",
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "azure_openai": "azure",
    "xai": "x-ai",
    "together": "together",
    "fireworks": "fireworks",
}


def split_model(model: str) -> tuple[str | None, str]:
    """('openai', 'gpt-4o') for 'openai:gpt-4o'; (None, 'gpt-4o') for a bare name."""
    provider, sep, name = model.partition(":")
    if not sep:
        return None, model
    return _PROVIDERS.get(provider, provider), name


def cost_usd(
    model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> float | None:
    """What a call cost, or None when the model's price is unknown. `input_tokens` includes
    `cached_input_tokens`, which are priced at the provider's cached-input rate."""
    provider, name = split_model(model)
    if not _known(provider, name):
        return None
    from genai_prices import Usage, calc_price

    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=min(cached_input_tokens, input_tokens) or None,
    )
    return float(calc_price(usage, model_ref=name, provider_id=provider).total_price)


def price_known(model: str) -> bool:
    """Whether `model` ('provider:model' or a bare name) has a price."""
    return _known(*split_model(model))


@lru_cache(maxsize=256)
def _known(provider: str | None, name: str) -> bool:
    from genai_prices import Usage, calc_price

    try:
        calc_price(Usage(input_tokens=1), model_ref=name, provider_id=provider)
    except LookupError:
        return False
    return True


def cost_budget_problem(ctx: Any) -> str:
    """Why `ctx` (a Context) cannot keep its cost budget ("" when it can, or has none): a role's
    model has no known price, so its calls would cost None and the budget could not count
    them. Checked before any model is paid for, by the CLI and by every node (app/limits.py)."""
    if not ctx.max_cost_usd:
        return ""
    for role in ("planner", "executor", "replanner"):
        spec = getattr(ctx, f"{role}_model")
        priced = priced_as(spec, role)
        if not price_known(priced):
            shown = spec if priced == spec else f"{spec} (its {role} priced as {priced!r})"
            return (
                f"model {shown} has no known price, so a cost budget (max_cost_usd="
                f"{ctx.max_cost_usd}) cannot be kept; use a priced model or drop the cost budget"
            )
    return ""


def priced_as(spec: str, role: str) -> str:
    """The model whose price `spec`'s calls in `role` cost: for a scripted one, the scenario's
    stand-in for that role ("" when it names none: such calls have no price)."""
    provider, _, name = spec.partition(":")
    if provider != "scripted":
        return spec
    from app.scripted.scenarios import load_scenario

    return load_scenario(name).stands_for.get(role, "")
