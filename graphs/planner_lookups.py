"""Feasibility look-ups: a few read-only tool calls the planner may make before it writes the plan.

A planner that cannot see the data plans blind ("query the orders table" when there is none).
With `Context.planner_tools` it may first look (list the files, read a table's schema), at most
`max_planner_tool_calls` times in all, then it writes the plan. Only the registry's read-only
tools qualify: a look-up happens before any step, any approval and any budget check of the
steps, so it must not change anything. What a look-up returns is untrusted data like every tool
output: bounded in size and time, and wrapped in a <data> block (prompts/untrusted.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool

from app import limits
from app.context import Context
from graphs.aio import invoke_tool
from graphs.tool_step import tool_settings
from prompts.untrusted import storable, wrap
from tools import build_tools

READ_ONLY_TOOLS = ("calculator", "list_files", "read_file", "sql_query", "http_get")
MAX_LOOKUPS = 10  # the most a context may ask for: look-ups are paid strong-model turns
LOOKUP_CHARS = 8_000  # of one look-up's output the planner is shown
LOOKUP_TIMEOUT_S = 30.0


def planner_tools(ctx: Context) -> list[BaseTool]:
    """The tools the planner may look with (none by default); ValueError saying what is wrong
    with the setting, before any model is paid for."""
    if not ctx.planner_tools:
        return []
    problem = planner_tools_problem(ctx)
    if problem:
        raise ValueError(problem)
    limits.enforce(ctx)  # the workspace and database the look-ups read are the server's to allow
    return build_tools(ctx.planner_tools, tool_settings(ctx))


def planner_tools_problem(ctx: Context) -> str:
    """What is wrong with the run's look-up settings ("" when nothing is); the CLI checks this
    before a run is recorded, the planner before any model is paid for."""
    refused = [n for n in ctx.planner_tools if n not in READ_ONLY_TOOLS]
    if refused:
        return (
            f"planner_tools may name only read-only tools ({', '.join(READ_ONLY_TOOLS)}); "
            f"not {', '.join(map(repr, refused))}"
        )
    # Checked with no planner tools too: a value the run cannot use is a mistake to say now.
    if not 0 <= ctx.max_planner_tool_calls <= MAX_LOOKUPS:
        return f"max_planner_tool_calls is {ctx.max_planner_tool_calls}; give 0 to {MAX_LOOKUPS}"
    return ""


class Lookups:
    """The look-ups of one planner call: tools are offered while calls remain, then withdrawn,
    so the conversation ends with a plan. `made` records each call for events and `show`."""

    def __init__(
        self,
        tools: list[BaseTool],
        max_calls: int,
        on_lookup: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.tools = {t.name: t for t in tools}
        self.on_lookup = on_lookup
        self.remaining = max_calls if tools else 0
        self.made: list[dict[str, Any]] = []
        self._offered = False

    def bind(self, model: Any) -> Any:
        """`model` for the next call: with the tools while look-ups remain."""
        self._offered = self.remaining > 0
        return model.bind_tools(list(self.tools.values())) if self._offered else model

    def wants(self, reply: AIMessage) -> bool:
        """The reply asks for look-ups it was offered (not a plan yet)."""
        return self._offered and bool(reply.tool_calls)

    async def answer(self, reply: AIMessage) -> list[ToolMessage]:
        """A tool message for each call of `reply`: the output, or why it was not made."""
        return [await self._one(call) for call in reply.tool_calls]

    async def _one(self, call: dict[str, Any]) -> ToolMessage:
        name, args, call_id = call["name"], call.get("args") or {}, call.get("id") or ""
        record: dict[str, Any] = {"tool": name, "args": args, "ok": False, "at": time.time()}
        tool = self.tools.get(name)
        if self.remaining <= 0:
            return ToolMessage(
                content="refused: no look-ups left; write the plan now",
                tool_call_id=call_id,
                name=name,
            )
        self.remaining -= 1  # a refused call counts too: the conversation must end
        self.made.append(record)
        if tool is None:
            text = f"refused: {name!r} is not a planner tool (these are: {', '.join(self.tools)})"
            record["output"] = text[:500]
        else:
            try:
                call = {"type": "tool_call", "name": name, "args": args, "id": call_id}
                answer = await asyncio.wait_for(invoke_tool(tool, call), LOOKUP_TIMEOUT_S)
                content = getattr(answer, "content", answer)
                text = content if isinstance(content, str) else json.dumps(content, default=str)
                record["ok"] = getattr(answer, "status", "success") != "error"
            except TimeoutError:
                text = f"look-up {name} took longer than {LOOKUP_TIMEOUT_S:.0f} s; it was stopped"
            except Exception as exc:  # a failing look-up is information, not a crash
                text = f"look-up {name} failed: {exc}"
            text = storable(text)  # kept in the state and the journal (prompts/untrusted.py)
            if len(text) > LOOKUP_CHARS:
                text = text[:LOOKUP_CHARS] + f"\n[cut: {len(text)} characters in all]"
            record["output"] = text[:500]
            text = wrap(f"result of look-up {name}", text)
        if self.on_lookup:
            self.on_lookup(record)
        return ToolMessage(content=text, tool_call_id=call_id, name=name)
