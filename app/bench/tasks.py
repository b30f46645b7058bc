"""The benchmark's tasks, their look-up tool, and what each architecture's model replies.

Every task is look-ups and maybe a total, with look-up outputs of about 70 or 800 tokens:

- fanout6 / fanout10: 6 or 10 independent look-ups, then their total (calculator);
- chain4: 4 look-ups, each one's key taken from the previous result;
- diamond: one look-up, two look-ups keyed by its result, then their total.

The data is deterministic, so the replies a capable model would give are known in advance: the
planexec plan (tool steps with `${...}` references, then the final answer) and the ReAct turns
(the tool calls of each turn, then the same final answer). Both are generated here from the same
task, so neither architecture is given a better script than the other.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

LOOKUP_LATENCY_S = 0.1  # the look-up service itself, the same for every architecture
OUTPUT_TOKENS = {"short": 70, "long": 800}
_FILLER = (
    "record audited quarterly by the regional office; figures reconciled against the ledger, "
    "source system of record, currency USD, adjustments none, reviewer initials on file, "
    "retention seven years, classification internal, last change approved by operations"
).split()


@dataclass(frozen=True)
class Call:
    """One tool call a model makes."""

    tool: str
    args: dict[str, Any]


@dataclass
class Task:
    """A benchmark task: its goal, look-up data, and the replies each architecture's model gives."""

    name: str
    goal: str
    size: str  # short or long tool outputs
    records: dict[str, dict[str, Any]]
    plan: list[dict[str, Any]]
    """planexec: the planner's steps (tool steps with references)."""
    react_turns: list[list[Call]]
    """ReAct: the tool calls of each turn, independent ones in one turn."""
    answer: str
    lookups: int = field(init=False)

    def __post_init__(self) -> None:
        self.lookups = sum(1 for turn in self.react_turns for c in turn if c.tool == "lookup")


def _value(key: str) -> int:
    return 100 + (sum(map(ord, key)) * 37) % 900


def _record(key: str, size: str, **links: str) -> dict[str, Any]:
    """A look-up result: key, value, links to other keys, then notes that pad the JSON to about
    the size's token count (value and links first, so a cut result keeps them)."""
    record: dict[str, Any] = {"key": key, "value": _value(key), **links, "notes": ""}
    words = []
    target = OUTPUT_TOKENS[size]
    while _tokens(json.dumps(record)) < target:
        words.append(_FILLER[len(words) % len(_FILLER)])
        record["notes"] = " ".join(words)
    return record


def _tokens(text: str) -> int:
    from app.scripted.tokens import count_text

    return count_text(text)


def _fanout(n: int, size: str) -> Task:
    keys = [f"item-{i}" for i in range(1, n + 1)]
    records = {k: _record(k, size) for k in keys}
    ids = [str(i) for i in range(1, n + 1)]  # the ids the planner prompt asks for
    plan: list[dict[str, Any]] = [
        {"id": sid, "tool": "lookup", "args": {"key": k}} for sid, k in zip(ids, keys, strict=True)
    ]
    plan.append(
        {
            "id": str(n + 1),
            "depends_on": ids,
            "tool": "calculator",
            "args": {"expression": " + ".join(f"${{{sid}.value}}" for sid in ids)},
        }
    )
    total = sum(r["value"] for r in records.values())
    expression = " + ".join(str(records[k]["value"]) for k in keys)
    return Task(
        name=f"fanout{n}-{size}",
        goal=f"Look up {', '.join(keys)} and give the total of their values.",
        size=size,
        records=records,
        plan=plan,
        react_turns=[
            [Call("lookup", {"key": k}) for k in keys],
            [Call("calculator", {"expression": expression})],
        ],
        answer=f"The total of the {n} values is {total}.",
    )


def _chain(n: int, size: str) -> Task:
    keys = [f"node-{i}" for i in range(1, n + 1)]
    records = {
        k: _record(k, size, **({"next": keys[i + 1]} if i + 1 < n else {}))
        for i, k in enumerate(keys)
    }
    plan: list[dict[str, Any]] = [{"id": "1", "tool": "lookup", "args": {"key": keys[0]}}]
    for i in range(2, n + 1):
        plan.append(
            {
                "id": str(i),
                "depends_on": [str(i - 1)],
                "tool": "lookup",
                "args": {"key": f"${{{i - 1}.next}}"},
            }
        )
    last = records[keys[-1]]["value"]
    return Task(
        name=f"chain{n}-{size}",
        goal=f"Start at {keys[0]} and follow 'next' to the end of the chain; give the last value.",
        size=size,
        records=records,
        plan=plan,
        react_turns=[[Call("lookup", {"key": k})] for k in keys],
        answer=f"The chain ends at {keys[-1]}, whose value is {last}.",
    )


def _diamond(size: str) -> Task:
    records = {
        "root": _record("root", size, left="left-1", right="right-1"),
        "left-1": _record("left-1", size),
        "right-1": _record("right-1", size),
    }
    left, right = records["left-1"]["value"], records["right-1"]["value"]
    plan = [
        {"id": "1", "tool": "lookup", "args": {"key": "root"}},
        {"id": "2", "depends_on": ["1"], "tool": "lookup", "args": {"key": "${1.left}"}},
        {"id": "3", "depends_on": ["1"], "tool": "lookup", "args": {"key": "${1.right}"}},
        {
            "id": "4",
            "depends_on": ["2", "3"],
            "tool": "calculator",
            "args": {"expression": "${2.value} + ${3.value}"},
        },
    ]
    return Task(
        name=f"diamond-{size}",
        goal="Look up root, then its left and right records; give the total of their values.",
        size=size,
        records=records,
        plan=plan,
        react_turns=[
            [Call("lookup", {"key": "root"})],
            [Call("lookup", {"key": "left-1"}), Call("lookup", {"key": "right-1"})],
            [Call("calculator", {"expression": f"{left} + {right}"})],
        ],
        answer=f"The left and right values total {left + right}.",
    )


@cache
def all_tasks() -> tuple[Task, ...]:
    tasks = []
    for size in ("short", "long"):
        tasks += [_fanout(6, size), _fanout(10, size), _chain(4, size), _diamond(size)]
    return tuple(tasks)


def task_names() -> list[str]:
    return [t.name for t in all_tasks()]


class LookupArgs(BaseModel):
    key: str = Field(description="The record's key, e.g. 'item-3'.")


def lookup_tool(task: Task) -> BaseTool:
    """The task's look-up service: a record as JSON, after LOOKUP_LATENCY_S."""

    def lookup(key: str) -> str:
        time.sleep(LOOKUP_LATENCY_S)
        record = task.records.get(key)
        if record is None:
            raise ValueError(f"no record with key {key!r}")
        return json.dumps(record)

    return StructuredTool.from_function(
        func=lookup,
        name="lookup",
        description="Look up a record by key; returns JSON: key, value, links (next, left, "
        "right) when it has them, notes.",
        args_schema=LookupArgs,
    )
