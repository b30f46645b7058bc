"""A tool step: a plan step that is one tool call, run with no model.

When the planner already knows the call a step makes (which tool, which arguments, maybe filled
from its dependencies' results), an executor model would only copy it out: two model turns of
latency and tokens for nothing. Such a step names `tool` and `args`; here the references in
`args` are resolved (graphs/tool_args.py), the tool runs inside the same step and tool-call
identity as a model's call (so idempotency keys and scenario faults work), and its output is
the step's result. An empty output is a surprise, a raising tool or an unresolvable reference a
failed step: exactly what they are for a model step, so the replanner sees no difference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from app import limits
from app.context import Context
from graphs.aio import run_sync
from graphs.executor import Durability, StepOutcome, _StepRun
from graphs.state import DONE, FAILED
from graphs.tool_args import RefError, resolve_args
from prompts.untrusted import unwrap
from tools import ToolSettings, build_tools
from tools.step_context import StepIdentity, running_step


def tools_for_run(ctx: Context, extra: Sequence[BaseTool] = ()) -> list[BaseTool]:
    """The tools a run may use: the registry's that `ctx.tools` names, then `extra` (from
    `build_graph(tools=...)`). The planner checks tool steps against these; the executor runs
    them."""
    # The server's limits, before anything is built: the planner and the executor both come
    # through here, so a context edited mid-run is checked again (app/limits.py).
    limits.enforce(ctx)
    extra_names = {t.name for t in extra}
    builtin = [name for name in ctx.tools if name not in extra_names]
    return build_tools(builtin, tool_settings(ctx)) + list(extra)


def tool_settings(ctx: Context) -> ToolSettings:
    """What the registry's tools are bound to for a run: its workspace and SQL database."""
    return ToolSettings(
        workspace=Path(ctx.workspace),
        sql_database=Path(ctx.sql_database) if ctx.sql_database else None,
    )


def is_tool_step(step: dict[str, Any]) -> bool:
    return bool(step.get("tool"))


def run_tool_step(
    step: dict[str, Any],
    dependencies: dict[str, dict[str, Any]],
    tools: list[BaseTool],
    run_id: str = "",
    durability: Durability | None = None,
) -> StepOutcome:
    """`arun_tool_step` for sync callers."""
    return run_sync(arun_tool_step(step, dependencies, tools, run_id, durability))


async def arun_tool_step(
    step: dict[str, Any],
    dependencies: dict[str, dict[str, Any]],
    tools: list[BaseTool],
    run_id: str = "",
    durability: Durability | None = None,
) -> StepOutcome:
    """Run `step`'s tool once with its resolved args. Never raises for tool trouble. With a turn
    journal, the call is journaled like an executor's (started, then its answer), so a resumed
    tool step replays its answer rather than calling again."""
    with running_step(StepIdentity(run_id, step["id"], step.get("attempt", 1))):
        run = _StepRun(step, tools, run_id, durability)
        results = {dep: str(r.get("result", "")) for dep, r in dependencies.items()}
        try:
            args = resolve_args(step.get("args") or {}, results)
        except RefError as exc:
            return StepOutcome(run.finish(FAILED, error=f"arguments of {step['tool']}: {exc}"))
        call = {"name": step["tool"], "args": args, "id": f"toolstep_{step['id']}"}
        answer = await run.acall_tool(call, max_tool_calls=1)
        if run.stopped:
            return run.stop(run.stopped, {})
        if run.error:
            return StepOutcome(run.finish(FAILED, error=run.error))
        content = answer.content
        text = content if isinstance(content, str) else str(content)
        return StepOutcome(run.finish(DONE, text=unwrap(text)))  # the result, not its data block


def describe_tools(tools: Sequence[BaseTool], *, description_chars: int = 200) -> str:
    """One line per tool for the planner: name, arguments in order (`?` = optional) and the
    first sentence of what it does, so it can write tool steps (positional arguments follow
    this order: `tool_params`). The planner needs the gist (and what the output looks like),
    not the manual: every token here is paid on every planner call."""
    lines = []
    for tool in tools:
        props, required = _schema_fields(tool)
        params = ", ".join(
            f"{name}{'' if name in required else '?'}: {_type_name(spec)}"
            for name, spec in props.items()
        )
        text = " ".join((tool.description or "").split())
        text = text.split(". ", 1)[0].rstrip(".") + "."
        if len(text) > description_chars:
            text = text[: description_chars - 3].rsplit(" ", 1)[0] + "..."
        lines.append(f"- {tool.name}({params}): {text}")
    return "\n".join(lines) or "(none)"


def _type_name(spec: dict[str, Any]) -> str:
    """A parameter's JSON type for the planner: `string`, `string|null` for a list of types
    (MCP schemas), `any` when there is none."""
    kind = spec.get("type", "any")
    return "|".join(map(str, kind)) if isinstance(kind, list) else str(kind)


def tool_params(tools: Iterable[BaseTool]) -> dict[str, list[str]]:
    """Each tool's parameter names in the order `describe_tools` shows them: what a plan line's
    positional arguments bind to (graphs/plan_text.py)."""
    return {tool.name: list(_schema_fields(tool)[0]) for tool in tools}


_PARAM_NAME = re.compile(r"(?:^|, )([^,:]+?)(?=: )")  # `name?: type` in `a: string, b?: x|y`
_DESCRIBED = re.compile(r"^- (?P<name>[A-Za-z0-9_.-]+)\((?P<params>[^()]*)\): ", re.MULTILINE)


def params_of_description(text: str) -> dict[str, list[str]]:
    """`tool_params` read back from `describe_tools` lines inside a prompt: what a model sees of
    the argument order (the scripted model writes its plan lines from it)."""
    return {
        m["name"]: [p.rstrip("?") for p in _PARAM_NAME.findall(m["params"])]
        for m in _DESCRIBED.finditer(text)
    }


def _schema_fields(tool: BaseTool) -> tuple[dict[str, dict], list[str]]:
    """(properties in order, required names) of a tool's call schema."""
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        return schema.get("properties", {}), schema.get("required", [])
    props = schema.model_json_schema().get("properties", {})
    return props, [n for n, f in schema.model_fields.items() if f.is_required()]
