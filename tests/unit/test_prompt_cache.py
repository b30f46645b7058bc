"""Cached prompt tokens as OpenAI reports them: the rule, the scripted model, a whole run."""

from __future__ import annotations

import json
import runpy
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from app.runs.demo import demo_context
from app.scripted.chat_model import ScriptedChatModel
from app.scripted.prompt_cache import PromptCache
from app.scripted.tokens import prompt_tokens
from app.usage import cache_hit_rate, merge_usage, total_usage, usage_of_call
from graphs.plan_execute import build_graph
from tests.helpers import clean_env, instant_demo
from tools.registry import DEFAULT_TOOLS

ROOT = Path(__file__).resolve().parents[2]
# The benchmark's own scenario rewrite: the run this test checks is the one it measures.
without_step_tools = runpy.run_path(str(ROOT / "benchmarks" / "prompt_cache.py"))[
    "without_step_tools"
]


def openai_cached(shared: int) -> int:
    """OpenAI's rule, written out: 0 under 1,024 shared tokens, else 1,024 + 128·k ≤ shared."""
    return 0 if shared < 1024 else 1024 + (shared - 1024) // 128 * 128


# the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [0, 1023, 1024, 1151, 1152, 1500, 2000])
def test_a_prefix_sent_before_is_cached_in_128_token_steps_from_1024(shared: int) -> None:
    cache = PromptCache()
    first = list(range(2000))
    second = first[:shared] + [-9] * (2000 - shared)  # the same start, then different tokens
    assert cache.cached_tokens("run", first) == 0
    assert cache.cached_tokens("run", second) == openai_cached(shared)


def test_a_repeated_prompt_is_cached_up_to_its_last_full_step() -> None:
    cache = PromptCache()
    prompt = list(range(1500))
    assert cache.cached_tokens("run", prompt) == 0
    assert cache.cached_tokens("run", prompt) == 1408  # 1,024 + 3·128; 1,536 > 1,500
    assert cache.cached_tokens("run", list(range(1000))) == 0  # under 1,024: never cached


def test_scopes_do_not_share_prefixes_and_old_scopes_are_forgotten() -> None:
    cache = PromptCache(max_scopes=2)
    prompt = list(range(1200))
    cache.cached_tokens("a", prompt)
    assert cache.cached_tokens("b", prompt) == 0
    cache.cached_tokens("c", prompt)  # a third scope pushes out the oldest ("a")
    assert cache.cached_tokens("a", prompt) == 0
    assert cache.cached_tokens("c", prompt) == 1152


def test_prefixes_per_scope_are_bounded() -> None:
    cache = PromptCache(max_prefixes=4)
    first = list(range(1024 + 128 * 9))  # ten boundaries: only the last four are kept
    cache.cached_tokens("run", first)
    assert cache.cached_tokens("run", first[:1024]) == 0  # the shortest prefix was dropped


# the scripted model ---------------------------------------------------------------------------


@pytest.fixture
def scenario(tmp_path: Path) -> str:
    script = {
        "name": "unit_prompt_cache",
        "goal": "g",
        "tools": [],
        "planner": {"steps": [{"id": "s1", "description": "Answer."}]},
        "executor": {"s1": [{"content": "ok"}], "s2": [{"content": "ok"}]},
        "replanner": [],
    }
    path = tmp_path / "unit_prompt_cache.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return str(path)


def ask(model: ScriptedChatModel, step: str, thread: str) -> Any:
    instructions = "Follow the plan step exactly and report what you found. " * 150
    messages = [SystemMessage(instructions), HumanMessage(f"Your step ({step}, attempt 1): go")]
    metadata = {"planexec_role": "executor", "planexec_step": step, "thread_id": thread}
    reply = model.invoke(messages, config={"metadata": metadata})
    return reply.usage_metadata, prompt_tokens(messages)


def test_the_scripted_model_reports_a_long_shared_prefix_as_cached_on_the_second_call(
    scenario: str,
) -> None:
    model = ScriptedChatModel(scenario=scenario)
    first, first_prompt = ask(model, "s1", "thread-1")
    second, second_prompt = ask(model, "s2", "thread-1")
    other_run, _ = ask(model, "s2", "thread-2")

    assert first["input_token_details"]["cache_read"] == 0
    shared = next(
        i for i, (a, b) in enumerate(zip(first_prompt, second_prompt, strict=False)) if a != b
    )
    assert shared > 1024
    assert second["input_token_details"]["cache_read"] == openai_cached(shared)
    assert other_run["input_token_details"]["cache_read"] == 0  # another run: its own cache
    assert second["input_tokens"] == len(second_prompt)


# a whole run ----------------------------------------------------------------------------------


class CacheLog(BaseCallbackHandler):
    """Adds up the cached input tokens every model call reports, per planexec role."""

    def __init__(self) -> None:
        self.role_of: dict[Any, str] = {}
        self.cached: dict[str, int] = defaultdict(int)

    def on_chat_model_start(self, serialized, messages, *, run_id, metadata=None, **kwargs):
        self.role_of[run_id] = (metadata or {})["planexec_role"]

    def on_llm_end(self, response, *, run_id, **kwargs):
        meta = response.generations[0][0].message.usage_metadata
        self.cached[self.role_of[run_id]] += meta["input_token_details"]["cache_read"]


def test_run_usage_sums_the_cached_tokens_each_call_reported(tmp_path: Path) -> None:
    # Offering every default tool makes the executor's shared prefix pass 1,024 tokens; the
    # steps' own tool lists are dropped so that every step is offered them all.
    scenario = without_step_tools(instant_demo(tmp_path))
    ctx = demo_context(tmp_path / "ws", scenario=str(scenario), tools=list(DEFAULT_TOOLS))
    graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
    log = CacheLog()
    config = {"configurable": {"thread_id": f"cache-{tmp_path.name}"}, "callbacks": [log]}

    state = graph.invoke({"goal": "Q3 revenue report"}, config=config, context=ctx)

    assert state["status"] == "done"
    usage = state["usage"]
    assert {role: u["cached_input_tokens"] for role, u in usage.items()} == dict(log.cached)
    assert usage["executor"]["cached_input_tokens"] > 0
    assert total_usage(usage)["cached_input_tokens"] == sum(log.cached.values())


def test_cached_input_tokens_add_up_per_role_and_give_the_hit_rate() -> None:
    from langchain_core.messages import AIMessage

    def reply(input_tokens: int, cached: int) -> AIMessage:
        message = AIMessage(content="x")
        message.usage_metadata = {
            "input_tokens": input_tokens,
            "output_tokens": 1,
            "total_tokens": input_tokens + 1,
            "input_token_details": {"cache_read": cached},
        }
        return message

    usage = merge_usage(
        usage_of_call("executor", reply(2000, 1024), "openai:gpt-4o-mini"),
        usage_of_call("executor", reply(2000, 1536), "openai:gpt-4o-mini"),
    )
    assert usage["executor"]["cached_input_tokens"] == 2560
    assert cache_hit_rate(usage["executor"]) == pytest.approx(2560 / 4000)
    assert cache_hit_rate({"input_tokens": 0}) is None


def test_cached_tokens_on_openai_service_tiers_count_and_never_exceed_the_input() -> None:
    from app.usage import cached_input_tokens

    # langchain-openai names them per service tier (priority, flex).
    tiered = {"input_tokens": 2000, "input_token_details": {"priority_cache_read": 1152}}
    assert cached_input_tokens(tiered) == 1152
    overstated = {"input_tokens": 10, "input_token_details": {"cache_read": 64}}
    assert cached_input_tokens(overstated) == 10
    assert cached_input_tokens({"input_tokens": 10}) == 0


# show -----------------------------------------------------------------------------------------


def cached_run(tmp_path: Path) -> str:
    """A demo run through the CLI whose executor reads from the prompt cache (every step is
    offered planexec's default tools: a shared prefix past 1,024 tokens); its database URL."""
    from app.runs.demo import prepare_workspace
    from tests.helpers import run_cli

    db, ws = str(tmp_path / "runs.sqlite"), tmp_path / "ws"
    sql = str(prepare_workspace(ws))
    ran = run_cli(
        "run", "Q3 revenue report", "--scenario", str(without_step_tools(instant_demo(tmp_path))),
        "--tools", ",".join(DEFAULT_TOOLS), "--workspace", str(ws), "--sql-database", sql,
        "--db", db, "--thread", "cached", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return db


def test_show_gives_each_roles_cache_hit_rate_in_json_and_in_the_table(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    db = cached_run(tmp_path)
    shown = run_cli("show", "cached", "--db", db, "--json", cwd=tmp_path)
    usage = json.loads(shown.stdout)["usage"]
    executor = usage["executor"]
    assert executor["cached_input_tokens"] > 0
    assert executor["cache_hit_rate"] == executor["cached_input_tokens"] / executor["input_tokens"]
    assert usage["planner"]["cache_hit_rate"] == 0  # one planner call: nothing seen before

    wide = {**clean_env(), "COLUMNS": "160"}
    table = run_cli("show", "cached", "--db", db, cwd=tmp_path, env=wide).stdout
    row = next(line for line in table.splitlines() if line.strip("│ ").startswith("executor"))
    assert f"{executor['cache_hit_rate']:.0%}" in row


class UsageRows(HTMLParser):
    """The cells of each `<tr data-role=...>` row of a report, by role."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._role: str | None = None
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._role = dict(attrs).get("data-role")
            if self._role:
                self.rows[self._role] = []
        elif tag == "td" and self._role:
            self.rows[self._role].append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False
        elif tag == "tr":
            self._role = None

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._role:
            self.rows[self._role][-1] += data


def test_the_report_gives_each_roles_cached_tokens_and_hit_rate(tmp_path: Path) -> None:
    from app.cli.report_data import gather
    from app.cli.report_html import render
    from app.runs.persistence import open_persistence

    db = cached_run(tmp_path)
    with open_persistence(db) as persistence:
        report = gather(persistence, "cached")
    executor = report.usage["executor"]
    assert executor["cached_input_tokens"] > 0
    assert executor["cache_hit_rate"] == executor["cached_input_tokens"] / executor["input_tokens"]
    assert report.usage["planner"]["cache_hit_rate"] == 0
    # The steps' journaled usage holds the same cached tokens as the executor's total.
    assert sum(s.cached_input_tokens for s in report.steps) == executor["cached_input_tokens"]

    parser = UsageRows()
    parser.feed(render(report))
    role, _, calls, tokens_in, cached_in, rate, *_ = parser.rows["executor"]
    assert (role, calls) == ("executor", str(executor["calls"]))
    assert (tokens_in, cached_in) == (
        f"{executor['input_tokens']:,}",
        f"{executor['cached_input_tokens']:,}",
    )
    assert rate == f"{executor['cache_hit_rate']:.0%}" != "0%"
    assert parser.rows["planner"][5] == "0%"
    total = total_usage(report.usage)
    assert parser.rows["total"][4] == f"{total['cached_input_tokens']:,}"
    assert parser.rows["total"][5] == f"{total['cached_input_tokens'] / total['input_tokens']:.0%}"


# the scenario server --------------------------------------------------------------------------


def test_the_server_reports_cached_tokens_per_model_and_forgets_them_on_reset() -> None:
    from starlette.testclient import TestClient

    from app.scripted.server import create_app
    from prompts import render
    from tests.helpers import SCENARIOS

    c = TestClient(create_app(str(SCENARIOS / "openai_demo_fast.json")))
    # The executor's instructions and a long tool description: one prefix of 1,300+ tokens.
    long_tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a term up in the catalogue. " * 180,
            "parameters": {"type": "object", "properties": {"term": {"type": "string"}}},
        },
    }

    def ask(model: str, step: str) -> dict[str, Any]:
        task = render(
            "executor_task", goal="g", step_id=step, attempt=1, description="d", dependencies=""
        )
        messages = [
            {"role": "system", "content": render("executor", max_tool_calls=6)},
            {"role": "user", "content": task},
        ]
        body = {"model": model, "messages": messages, "tools": [long_tool]}
        response = c.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.json()["usage"]

    first = ask("gpt-4o-mini", "s1")
    second = ask("gpt-4o-mini", "s5")
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and (cached - 1024) % 128 == 0 and cached < second["prompt_tokens"]
    assert ask("gpt-4o", "s5")["prompt_tokens_details"]["cached_tokens"] == 0  # another model
    ledger = c.get("/_planexec/usage").json()["usage"]["executor"]
    assert ledger["cached_tokens"] == cached
    c.post("/_planexec/reset")
    assert ask("gpt-4o-mini", "s5")["prompt_tokens_details"]["cached_tokens"] == 0
