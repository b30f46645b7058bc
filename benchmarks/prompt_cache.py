"""How much of each role's input a provider's prompt cache can serve, in the bundled demo.

    python benchmarks/prompt_cache.py

The demo goal runs through the real graph with the scripted demo scenario in every role (latency
removed). Every model call's prompt (tool schemas, then messages, as the provider reads it) is
tokenized with the same BPE tokenizer the scripted model bills with, and compared with the
earlier prompts of the same role in the run. Per role the table gives:

- shared prefix: input tokens that repeat the start of an earlier prompt of the role, whatever
  their length: the most any prefix cache could serve;
- cached (OpenAI rule): what the run's usage recorded as cached input tokens, by OpenAI's rule
  (a prefix of 1,024 tokens or more, in 128-token steps, sent before in the run);
- hit rate: cached / input;
- cost: what the role's calls cost, cached tokens at the cached rate (the models each role of
  the demo scenario stands for: gpt-4o, gpt-4o-mini, gpt-4o).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.store.memory import InMemoryStore  # noqa: E402

from app.runs.demo import demo_context  # noqa: E402
from app.scripted.scenarios import BUNDLED_DIR  # noqa: E402
from app.scripted.tokens import prompt_tokens  # noqa: E402
from app.usage import ROLES  # noqa: E402
from graphs.plan_execute import build_graph  # noqa: E402
from tools.registry import DEFAULT_TOOLS  # noqa: E402


class PromptLog(BaseCallbackHandler):
    """Every chat model call's prompt as tokens, per planexec role, in call order."""

    def __init__(self) -> None:
        self.prompts: dict[str, list[list[int]]] = {role: [] for role in ROLES}

    def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs):  # noqa: ANN001
        tools = (kwargs.get("invocation_params") or {}).get("tools") or []
        role = (metadata or {}).get("planexec_role", "unknown")
        self.prompts.setdefault(role, []).append(prompt_tokens(messages[0], tools))


def shared_prefix(prompt: list[int], earlier: list[list[int]]) -> int:
    """The longest start of `prompt` that an earlier prompt also starts with."""
    best = 0
    for other in earlier:
        n = 0
        for a, b in zip(prompt, other, strict=False):
            if a != b:
                break
            n += 1
        best = max(best, n)
    return best


def instant_demo(folder: Path) -> Path:
    script = json.loads((BUNDLED_DIR / "demo.json").read_text(encoding="utf-8"))
    script["latency"] = {}
    for turns in script["executor"].values():
        for turn in turns:
            turn.pop("latency", None)
    path = folder / "instant_demo.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    return path


def without_step_tools(scenario: Path) -> Path:
    """`scenario` rewritten so that no step names its tools: every step is offered them all."""
    script = json.loads(scenario.read_text(encoding="utf-8"))
    plans = [script["planner"]] + [r for r in script["replanner"] if r.get("steps")]
    for plan in plans:
        for step in plan["steps"]:
            step.pop("tools", None)
    scenario.write_text(json.dumps(script), encoding="utf-8")
    return scenario


def measure(
    tools: list[str] | None = None, *, step_tools: bool = True
) -> tuple[dict[str, Any], PromptLog]:
    """One demo run (offering `tools`, or the demo's own; with `step_tools` False, every step
    is offered all of them); its final state and prompts."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        extra = {"tools": tools} if tools else {}
        scenario = instant_demo(folder)
        if not step_tools:
            without_step_tools(scenario)
        ctx = demo_context(folder / "ws", scenario=str(scenario), **extra)
        graph = build_graph(checkpointer=InMemorySaver(), store=InMemoryStore())
        log = PromptLog()
        thread = f"prompt-cache-bench-{len(tools or [])}-{step_tools}"  # a run, a cache of its own
        config = {"configurable": {"thread_id": thread}, "callbacks": [log]}
        state = graph.invoke({"goal": "Q3 revenue report"}, config=config, context=ctx)
    return state, log


def main() -> int:
    every = list(DEFAULT_TOOLS)
    for title, tools, step_tools in [
        ("demo as shipped (3 tools)", None, True),
        (f"demo offering planexec's default tools ({len(every)})", every, True),
        (f"the same, no per-step tool lists (every step offered all {len(every)})", every, False),
    ]:
        state, log = measure(tools, step_tools=step_tools)
        print(f"{title}: status {state['status']}")
        print_table(state["usage"], log)
        print()
    return 0


def print_table(usage: dict[str, Any], log: PromptLog) -> None:
    header = (
        "role",
        "calls",
        "input",
        "shared prefix",
        "share",
        "cached (OpenAI)",
        "hit rate",
        "cost $",
    )
    rows = []
    for role in ROLES:
        prompts = log.prompts.get(role) or []
        if not prompts:
            continue
        shared = sum(shared_prefix(p, prompts[:i]) for i, p in enumerate(prompts))
        total = sum(len(p) for p in prompts)
        longest = max(len(p) for p in prompts)
        totals = usage.get(role, {})
        assert totals.get("input_tokens") == total, (role, totals, total)  # same tokenizer
        cached = totals.get("cached_input_tokens", 0)
        rows.append(
            (
                role,
                str(len(prompts)),
                f"{total:,}",
                f"{shared:,}",
                f"{shared / total:.0%}",
                f"{cached:,}",
                f"{cached / total:.0%}",
                f"{totals.get('cost_usd') or 0:.5f}",
            )
        )
        rows.append(("", "", f"(longest {longest:,})", "", "", "", "", ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))


if __name__ == "__main__":
    sys.exit(main())
