"""Token and cost accounting: the reducer, the totals, the price table, and a whole demo run."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.context import Context
from app.pricing import cost_usd, price_known
from app.runs.demo import demo_context
from app.usage import merge_usage, total_usage, usage_of_call
from graphs.plan_execute import build_graph
from graphs.state import RESET
from tests.helpers import instant_demo


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("PLANEXEC_")]:
        monkeypatch.delenv(name)


def reply(input_tokens: int, output_tokens: int, model_name: str = "") -> AIMessage:
    return AIMessage(
        content="ok",
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
        response_metadata={"model_name": model_name} if model_name else {},
    )


# pricing ---------------------------------------------------------------------------------------


def test_cost_is_the_price_table_per_million_tokens() -> None:
    assert cost_usd("openai:gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert cost_usd("gpt-4o", 0, 1_000_000) == pytest.approx(10.00)
    assert cost_usd("openai:gpt-4o-mini", 2_000, 500) == pytest.approx(
        (2_000 * 0.15 + 500 * 0.60) / 1_000_000
    )


def test_cached_input_tokens_are_priced_at_the_cached_rate() -> None:
    # gpt-4o: $2.50 per million input tokens, $1.25 cached (OpenAI's list prices).
    full = cost_usd("openai:gpt-4o", 2_000, 100)
    cached = cost_usd("openai:gpt-4o", 2_000, 100, cached_input_tokens=1_024)
    assert full == pytest.approx((2_000 * 2.50 + 100 * 10.00) / 1e6)
    assert cached == pytest.approx((976 * 2.50 + 1_024 * 1.25 + 100 * 10.00) / 1e6)
    # Through a model reply: usage_of_call reads input_token_details.cache_read and prices it.
    answer = AIMessage(
        content="",
        usage_metadata={
            "input_tokens": 2_000,
            "output_tokens": 100,
            "total_tokens": 2_100,
            "input_token_details": {"cache_read": 1_024},
        },
        response_metadata={"model_name": "gpt-4o"},
    )
    assert usage_of_call("planner", answer, "openai:gpt-4o")["planner"]["cost_usd"] == (
        pytest.approx(cached)
    )


# Per million tokens (input, output), OpenAI's list prices; genai-prices must agree with them.
PRICES_PER_MTOK = {"gpt-4o": (2.50, 10.00), "gpt-4o-mini": (0.15, 0.60)}


def test_unknown_model_has_no_cost_rather_than_zero() -> None:
    assert cost_usd("acme:mystery-1", 1000, 1000) is None
    assert cost_usd("openai:no-such-model-7", 1000, 1000) is None
    assert not price_known("ollama:llama3")  # a local model: unknown, not free


def test_other_providers_and_models_are_priced_by_genai_prices() -> None:
    # The hand-typed table knew seven OpenAI models; these were all None with it.
    assert cost_usd("anthropic:claude-3-5-sonnet-latest", 1_000_000, 0) == pytest.approx(3.00)
    assert cost_usd("mistralai:mistral-large-latest", 1000, 1000) is not None
    assert cost_usd("o3-mini", 1_000_000, 0) != cost_usd("o3", 1_000_000, 0)


@pytest.mark.parametrize(
    ("snapshot", "family"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai:gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest family wins, not gpt-4o
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("o4-mini-2025-04-16", "o4-mini"),
    ],
)
def test_dated_snapshots_price_like_their_family(snapshot: str, family: str) -> None:
    assert cost_usd(snapshot, 1234, 567) == cost_usd(family, 1234, 567)


# usage_of_call / merge_usage / total_usage -----------------------------------------------------


def test_usage_of_call_prices_by_the_model_that_answered() -> None:
    usage = usage_of_call("executor", reply(1000, 200, "gpt-4o-mini-2024-07-18"), "openai:x")
    assert usage == {
        "executor": {
            "calls": 1,
            "input_tokens": 1000,
            "cached_input_tokens": 0,
            "output_tokens": 200,
            "cost_usd": pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6),
            "model": "gpt-4o-mini-2024-07-18",
        }
    }
    # Without a model name in the reply, the configured model prices it.
    fallback = usage_of_call("planner", reply(10, 5), "openai:gpt-4o")["planner"]
    assert (fallback["model"], fallback["cost_usd"]) == (
        "openai:gpt-4o",
        cost_usd("gpt-4o", 10, 5),
    )


def test_usage_of_call_without_usage_metadata_counts_a_call_and_no_tokens() -> None:
    usage = usage_of_call("replanner", AIMessage(content="x"), "openai:gpt-4o")["replanner"]
    assert (usage["calls"], usage["input_tokens"], usage["output_tokens"]) == (1, 0, 0)
    assert usage["cost_usd"] == 0.0


def test_merge_usage_adds_per_role() -> None:
    a = usage_of_call("executor", reply(100, 10), "openai:gpt-4o-mini")
    b = usage_of_call("executor", reply(300, 30), "openai:gpt-4o-mini")
    p = usage_of_call("planner", reply(50, 5), "openai:gpt-4o")

    merged = merge_usage(merge_usage(a, b), p)

    assert merged["executor"]["calls"] == 2
    assert merged["executor"]["input_tokens"] == 400
    assert merged["executor"]["output_tokens"] == 40
    assert merged["executor"]["cost_usd"] == pytest.approx(cost_usd("gpt-4o-mini", 400, 40))
    assert merged["planner"] == p["planner"]
    assert a["executor"]["calls"] == 1  # the reducer does not mutate its inputs
    assert merge_usage(None, a) == a and merge_usage(a, None) == a


def test_merge_usage_reset_marker_starts_from_zero() -> None:
    # The planner of a new run on a used thread sends the marker so usage is per run.
    old = usage_of_call("executor", reply(100, 10), "openai:gpt-4o-mini")
    new = usage_of_call("planner", reply(50, 5), "openai:gpt-4o")
    assert merge_usage(old, {**RESET, **new}) == new
    assert merge_usage(old, RESET) == {}


def test_merge_usage_lists_every_model_a_role_used() -> None:
    a = usage_of_call("executor", reply(1, 1), "openai:gpt-4o-mini")
    b = usage_of_call("executor", reply(1, 1), "openai:gpt-4.1-nano")
    assert merge_usage(a, b)["executor"]["model"] == "openai:gpt-4.1-nano, openai:gpt-4o-mini"


def test_unknown_price_propagates_as_none() -> None:
    known = usage_of_call("executor", reply(100, 10), "openai:gpt-4o-mini")
    unknown = usage_of_call("executor", reply(100, 10), "local:llama")
    assert unknown["executor"]["cost_usd"] is None
    assert merge_usage(known, unknown)["executor"]["cost_usd"] is None
    assert merge_usage(unknown, known)["executor"]["cost_usd"] is None

    planner = usage_of_call("planner", reply(100, 10), "openai:gpt-4o")
    total = total_usage(merge_usage(planner, unknown))
    assert total["cost_usd"] is None  # not the planner's cost alone
    assert (total["calls"], total["input_tokens"], total["output_tokens"]) == (2, 200, 20)


def test_total_usage_sums_all_roles() -> None:
    usage = merge_usage(
        usage_of_call("planner", reply(100, 10), "openai:gpt-4o"),
        usage_of_call("executor", reply(1000, 100), "openai:gpt-4o-mini"),
    )
    assert total_usage(usage) == {
        "calls": 2,
        "input_tokens": 1100,
        "cached_input_tokens": 0,
        "output_tokens": 110,
        "cost_usd": pytest.approx(cost_usd("gpt-4o", 100, 10) + cost_usd("gpt-4o-mini", 1000, 100)),
    }
    assert total_usage({}) == {
        "calls": 0,
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
    }


# a whole run -----------------------------------------------------------------------------------


class UsageLog(BaseCallbackHandler):
    """Adds up the usage_metadata every model call reports, per planexec role."""

    def __init__(self) -> None:
        self.role_of: dict[Any, str] = {}
        self.by_role: dict[str, dict[str, int]] = defaultdict(
            lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0}
        )

    def on_chat_model_start(self, serialized, messages, *, run_id, metadata=None, **kwargs):
        self.role_of[run_id] = (metadata or {})["planexec_role"]

    def on_llm_end(self, response, *, run_id, **kwargs):
        meta = response.generations[0][0].message.usage_metadata
        totals = self.by_role[self.role_of[run_id]]
        totals["calls"] += 1
        totals["input_tokens"] += meta["input_tokens"]
        totals["output_tokens"] += meta["output_tokens"]


def test_demo_run_usage_matches_the_model_calls_and_the_price_table(tmp_path: Path) -> None:
    ctx = demo_context(tmp_path / "ws", scenario=str(instant_demo(tmp_path)))
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    log = UsageLog()
    config = {"configurable": {"thread_id": "demo"}, "callbacks": [log]}

    state = graph.invoke({"goal": "Q3 revenue report"}, config=config, context=ctx)

    assert state["status"] == "done"
    usage = state["usage"]
    assert {role: u["calls"] for role, u in usage.items()} == {
        "planner": 1,
        "replanner": 2,
        "executor": 11,  # s1 and s5 are tool steps: no executor call
    }
    assert set(log.by_role) == set(usage)
    for role, reported in log.by_role.items():
        assert {k: usage[role][k] for k in reported} == reported
    priced_as = {"planner": "gpt-4o", "replanner": "gpt-4o", "executor": "gpt-4o-mini"}
    for role, model in priced_as.items():
        per_in, per_out = PRICES_PER_MTOK[model]
        expected = usage[role]["input_tokens"] * per_in + usage[role]["output_tokens"] * per_out
        assert usage[role]["cost_usd"] == pytest.approx(expected / 1e6)
        assert usage[role]["model"] == f"openai:{model}"
    assert total_usage(usage)["cost_usd"] == pytest.approx(
        sum(u["cost_usd"] for u in usage.values())
    )


@pytest.mark.parametrize("role", ["planner", "replanner"])
def test_usage_of_answered_attempts_is_kept_when_a_retry_fails(tmp_path: Path, role: str) -> None:
    # The model answers once with malformed output; its retry then raises (here: the script has
    # no second attempt; in a real run, a 429 or a 500 from the provider).
    malformed = {"attempts": [{"raw": "not a structured answer"}]}
    script: dict[str, Any] = {
        "name": "unit_usage_retry",
        "goal": "g",
        "tools": [],
        "planner": {"steps": [{"id": "s1", "description": "Answer."}]},
        "executor": {"s1": [{"content": "ok"}]},
        "replanner": [],
    }
    if role == "planner":
        script["planner"] = malformed
    else:
        script["replanner"] = [malformed]
    path = tmp_path / "unit_usage_retry.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    spec = f"scripted:{path}"
    # JSON: with the text end decision (the default) any text is an answer, never malformed.
    ctx = Context.every_role(spec, tools=[], plan_format="json")
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())

    state = graph.invoke({"goal": "g"}, config={"configurable": {"thread_id": "t"}}, context=ctx)

    assert state["status"] == "failed"
    assert f"has no reply for the {role}" in state["reason"]
    assert state["usage"].get(role, {}).get("calls") == 1


def test_a_report_steps_cost_is_unknown_when_any_of_its_calls_is_unpriced() -> None:
    """The report's per-step cost follows the totals' rule: an unpriced call anywhere in a
    step's attempts makes its cost unknown, never the priced part alone."""
    from app.cli.report_data import Attempt, StepView

    def attempt(number: int, cost: float | None) -> Attempt:
        usage = {"executor": {"calls": 1, "input_tokens": 10, "output_tokens": 1,
                              "cost_usd": cost}}  # fmt: skip
        return Attempt(number, "done", 0.0, 1.0, usage=usage)

    step = StepView("s1", "d", [], "done", attempts=[attempt(1, 0.25), attempt(2, None)])
    assert step.cost_usd is None
    step.attempts = [attempt(1, 0.25), attempt(2, 0.5)]
    assert step.cost_usd == 0.75
