"""Run one benchmark cell (a task through one architecture) and measure it.

Architectures:

- `planexec`: the real graph (`build_graph`), scripted planner/executor/replanner priced as
  gpt-4o / gpt-4o-mini / gpt-4o; the plan is tool steps, so no executor model is needed;
- `react`: LangChain `create_agent` on the planner's tier (gpt-4o), one tool call per turn
  (`parallel_tool_calls=False`, set the way LangChain sets model settings: a middleware);
- `react-parallel`: the same agent, independent tool calls in one turn.

Same tools (the task's `lookup`, the registry's `calculator`), same latency model
(app/bench/latency.py), same token counter over the messages each design really sends, same
prompt cache (OpenAI's rule, app/scripted/prompt_cache.py: a prefix of 1,024+ tokens sent
before in the same run is cached, and billed at the cached rate), same price table
(app/pricing.py). Checkpointers are in memory for both: this measures the
architectures, not the database.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from app.bench.latency import FIRST_TOKEN_S, PER_OUTPUT_TOKEN_S
from app.bench.tasks import Task
from app.usage import merge_usage, usage_of_call

ARCHS = ("planexec", "react", "react-parallel")
REACT_MODEL = "openai:gpt-4o"  # the planner's tier
REACT_PROMPT = (
    "You are a helpful assistant. Use the tools to answer the user's question. When several "
    "look-ups do not depend on each other, request them together."
)


@dataclass
class Cell:
    """One measured run: a task through one architecture."""

    task: str
    arch: str
    wall_s: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    calls_by_tier: dict[str, int] = field(default_factory=dict)
    answer: str = ""
    roles: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per role (planexec: planner, executor, replanner; ReAct: react): calls, input_tokens
    and cached_input_tokens, the part of them read from the prompt cache."""

    @property
    def cached_input_tokens(self) -> int:
        return sum(r.get("cached_input_tokens", 0) for r in self.roles.values())

    @property
    def calls(self) -> int:
        return sum(self.calls_by_tier.values())

    def row(self) -> dict[str, Any]:
        """The `--json` row."""
        return {
            "task": self.task,
            "arch": self.arch,
            "wall_s": round(self.wall_s, 3),
            "cost_usd": round(self.cost_usd, 8),
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "roles": self.roles,
        }


# What the cells import lazily, or on their first call. Two bench threads importing langgraph
# and langchain.agents for the first time at once can deadlock on Python's per-module import
# locks (a CI run died with `_DeadlockError` in langgraph.graph.message), so `warm_up` imports
# them in one thread before any cell starts.
LAZY_MODULES = (
    "graphs.plan_execute",
    "langchain.agents",
    "langchain.agents.middleware",
    "langchain_core.messages.block_translators.langchain_v0",
    "langchain_core.tracers.context",
    "langchain_core.tracers.run_collector",
    "langchain_core.tracers.stdout",
    "langgraph.checkpoint.memory",
    "langgraph.store.memory",
    "app.bench.react_model",
    "app.scripted.chat_model",
    "app.scripted.faults",
    "app.scripted.scenarios",
    "app.scripted.tokens",
    "bpe_openai",
    "genai_prices",
    "genai_prices.data",
    "genai_prices.data_units",
    "genai_prices.decompose",
    "genai_prices.validation",
    "tools",
)


def warm_up() -> None:
    """Import, in the calling thread, everything a cell would import on first use."""
    import importlib

    for name in LAZY_MODULES:
        importlib.import_module(name)
    # The tokenizer's own loading runs on first use; load it here too, for the same reason.
    from app.scripted.tokens import count_text

    count_text("warm")


def run_cell(task: Task, arch: str, *, max_concurrency: int | None = None) -> Cell:
    if arch == "planexec":
        return _run_planexec(task, max_concurrency)
    if arch in ("react", "react-parallel"):
        return _run_react(task, parallel=arch == "react-parallel")
    raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")


def planexec_scenario(task: Task) -> dict[str, Any]:
    """The scenario planexec's scripted models play for `task`: the plan, then the answer, with
    the benchmark's latency model per role (first token, then per output token). A streamed
    reply sends its pieces as they are 'generated', so the planner's steps can start while the
    plan streams, as with a real model; an unstreamed one arrives whole, after the same time."""
    from app.scripted.scenarios import PlanReply, ReplanReply

    plan = PlanReply(steps=task.plan)
    finish = ReplanReply(action="finish", response=task.answer)
    roles = ("planner", "executor", "replanner")
    return {
        "name": f"bench-{task.name}",
        "goal": task.goal,
        "tools": ["calculator"],
        "latency": dict.fromkeys(roles, FIRST_TOKEN_S),
        "token_latency": dict.fromkeys(roles, PER_OUTPUT_TOKEN_S),
        "planner": _dump(plan),
        "executor": {},
        "replanner": [_dump(finish)],
    }


def _dump(reply: Any) -> dict[str, Any]:
    # What the scripted model sends for a reply (app/scripted/chat_model.py).
    return reply.model_dump(exclude={"raw", "latency"}, exclude_none=True)


def _run_planexec(task: Task, max_concurrency: int | None) -> Cell:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    from app.bench.tasks import lookup_tool
    from app.context import Context
    from graphs.plan_execute import build_graph

    with tempfile.TemporaryDirectory(prefix="planexec-bench-") as tmp:
        scenario = Path(tmp) / f"{task.name}.json"
        scenario.write_text(json.dumps(planexec_scenario(task)), encoding="utf-8")
        extra = {"max_concurrency": max_concurrency} if max_concurrency else {}
        ctx = Context.every_role(
            f"scripted:{scenario}", tools=["calculator"], workspace=str(Path(tmp) / "ws"), **extra
        )
        graph = build_graph(
            checkpointer=InMemorySaver(), store=InMemoryStore(), tools=[lookup_tool(task)]
        )
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        started = time.perf_counter()
        state = graph.invoke({"goal": task.goal}, config=config, context=ctx)
        wall = time.perf_counter() - started
    if state.get("status") != "done":
        raise RuntimeError(f"planexec did not finish {task.name}: {state.get('reason')}")
    usage = state.get("usage", {})
    return Cell(
        task=task.name,
        arch="planexec",
        wall_s=wall,
        cost_usd=sum(u.get("cost_usd") or 0.0 for u in usage.values()),
        input_tokens=sum(u.get("input_tokens", 0) for u in usage.values()),
        output_tokens=sum(u.get("output_tokens", 0) for u in usage.values()),
        calls_by_tier=_by_tier((u.get("model", ""), u.get("calls", 0)) for u in usage.values()),
        answer=state.get("response", ""),
        roles={role: _role_tokens(u) for role, u in usage.items()},
    )


def _role_tokens(usage: dict[str, Any]) -> dict[str, int]:
    """A role's usage totals, as far as the prompt-cache table needs them."""
    return {k: int(usage.get(k, 0)) for k in ("calls", "input_tokens", "cached_input_tokens")}


TIERS = ("gpt-4o", "gpt-4o-mini")  # the planner's tier, the executor's


def _by_tier(calls: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Model calls per price tier (model name without its provider)."""
    tiers = dict.fromkeys(TIERS, 0)
    for model, n in calls:
        name = model.split(":", 1)[-1]
        tiers[name] = tiers.get(name, 0) + n
    return tiers


def _run_react(task: Task, *, parallel: bool) -> Cell:
    from langchain.agents import create_agent
    from langchain.agents.middleware import AgentMiddleware

    from app.bench.react_model import ScriptedReactModel
    from app.bench.tasks import lookup_tool
    from tools import ToolSettings, build_tools

    class OneToolCallPerTurn(AgentMiddleware):
        """parallel_tool_calls=False for every model call, as a provider setting."""

        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            settings = {**request.model_settings, "parallel_tool_calls": False}
            return handler(request.override(model_settings=settings))

    with tempfile.TemporaryDirectory(prefix="planexec-bench-") as tmp:
        calculator = build_tools(["calculator"], ToolSettings(workspace=Path(tmp)))
        agent = create_agent(
            ScriptedReactModel(task=task.name),
            tools=[lookup_tool(task), *calculator],
            system_prompt=REACT_PROMPT,
            middleware=[] if parallel else [OneToolCallPerTurn()],
        )
        started = time.perf_counter()
        out = agent.invoke({"messages": [HumanMessage(task.goal)]})
        wall = time.perf_counter() - started
    replies = [m for m in out["messages"] if isinstance(m, AIMessage)]
    usage = [usage_of_call("react", m, REACT_MODEL)["react"] for m in replies]
    totals: dict[str, dict[str, Any]] = {}
    for call in usage:
        totals = merge_usage(totals, {"react": call})
    return Cell(
        task=task.name,
        arch="react-parallel" if parallel else "react",
        wall_s=wall,
        cost_usd=sum(u["cost_usd"] or 0.0 for u in usage),
        input_tokens=sum(u["input_tokens"] for u in usage),
        output_tokens=sum(u["output_tokens"] for u in usage),
        calls_by_tier=_by_tier([(REACT_MODEL, len(replies))]),
        answer=str(replies[-1].content) if replies else "",
        roles={role: _role_tokens(u) for role, u in totals.items()},
    )
